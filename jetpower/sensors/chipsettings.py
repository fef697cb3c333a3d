"""Writing INA3221 settings for per-layer work, and restoring what was there (root only).

The hwmon ``ina3221`` driver (JetPack 5/6) exposes ``update_interval`` (ms), ``samples`` and
``inN_enable``; each write reprograms the chip's configuration register.  What a write does
(Linux ``ina3221_write_chip``, the same in 5.10 and 5.15):

- ``inN_enable`` sets the channel's enable bit; the conversion times are not touched;
- ``samples`` sets the averaging count to the table entry closest to the value;
- ``update_interval`` sets both conversion times to the table entry closest to
  ``DIV_ROUND_CLOSEST(update_interval * 1000 / 2, enabled channels x samples)``, with the channel
  count and averaging *in force at the moment of the write*.

So settings are written in that order (enables: the 1s before the 0s, so the chip never has
every channel off), and restoring the conversion time needs the averaging count it is written
under (:func:`_interval_writes`): on the JetPack 6 driver ``update_interval`` reads back without
the averaging count, so writing the read-back value again under ``samples`` > 1 would not give
the old conversion time back.

Before anything is written, the original values go into a record (:data:`RECORD_NAME` in the
result directory, and a copy at ``<root>/run/jetpower/``: :data:`PENDING`, which a reboot clears
together with the chip's settings), so that a run killed with SIGKILL is restored at the next
start or by ``jetpower doctor`` (:func:`restore_leftover`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower._fs import atomic_write_json
from jetpower.errors import SensorError
from jetpower.sensors import _ina3221
from jetpower.sensors.boards import board_info
from jetpower.sensors.discover import SKIP_LABELS

FORMAT = "jetpower.ina3221-settings"
VERSION = 1
#: the record of a run's settings in its result directory
RECORD_NAME = "jetpower_ina3221_settings.json"
#: the copy that outlives the result directory's run until restored (under the sysfs root)
PENDING = Path("run/jetpower/ina3221-settings-pending.json")
HWMON_GLOB = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"  # discovery's, for the same driver


@dataclass(frozen=True)
class Request:
    """What a plan's ``[sampler.ina3221]`` asks for: INA3221 settings for per-layer work.

    ``update_interval`` (ms) is written last and, as the hwmon driver does, sets both conversion
    times to the table entry closest to ``update_interval / (2 x enabled channels x samples)``
    (0: the shortest, 140 us).  ``samples`` is the averaging count.  ``enabled`` names the rails
    whose channels keep converting: every other channel of the chips holding them is disabled.
    A key left out is left as the driver has it.
    """

    update_interval: int | None = None
    samples: int | None = None
    enabled: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.update_interval is not None:
            out["update_interval"] = self.update_interval
        if self.samples is not None:
            out["samples"] = self.samples
        if self.enabled is not None:
            out["enabled"] = list(self.enabled)
        return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class Chip:
    """One chip's driver files as they are now."""

    hw: Path  # the hwmon directory
    rel: str  # the same, relative to the root
    labels: dict[int, str]  # channel -> label (channels that have an enable file)
    update_interval: int | None
    samples: int | None
    enable: dict[int, int]  # channel -> 0/1

    @property
    def enabled(self) -> tuple[int, ...]:
        return tuple(n for n in sorted(self.enable) if self.enable[n] == 1)

    def values(self) -> dict[str, Any]:
        return {"update_interval": self.update_interval, "samples": self.samples,
                "enable": {str(n): v for n, v in sorted(self.enable.items())}}


def chips(root: Path) -> list[Chip]:
    """The hwmon ``ina3221`` chips under ``root``, their settings read from the files."""
    out = []
    for hw in sorted(p for p in root.glob(HWMON_GLOB) if p.is_dir()):
        labels, enable = {}, {}
        for n in (1, 2, 3):
            e = _int(hw / f"in{n}_enable")
            if e is None:
                continue
            enable[n] = 1 if e else 0
            labels[n] = _read(hw / f"in{n}_label") or f"{hw.parent.parent.name}-in{n}"
        out.append(Chip(hw, str(hw.relative_to(root)), labels, _int(hw / "update_interval"),
                        _int(hw / "samples"), enable))
    return out


def _semantics(root: Path) -> tuple[str | None, str | None]:
    return board_info(root)["l4t"], _read(root / "proc/sys/kernel/osrelease")


def driver_conversion_us(update_interval_ms: int, channels: int, samples: int) -> int:
    """The conversion time the driver sets when ``update_interval`` is written with ``channels``
    enabled and ``samples`` averaging (integer arithmetic as in ``ina3221_write_chip``)."""
    half = update_interval_ms * 1000 // 2
    div = max(channels, 1) * samples
    return _ina3221.closest_conversion_time((half + div // 2) // div)


def _interval_writes(ct: int, channels: int, samples: int, interval: int | None
                     ) -> list[tuple[str, str]]:
    """Writes that leave the conversion time at ``ct`` and averaging at ``samples`` (channel
    count ``channels`` already in force): ``interval`` itself where it gives ``ct``, else under a
    helper averaging count chosen so that some integer update_interval gives ``ct`` exactly."""
    if interval is not None and interval >= 0 and \
            driver_conversion_us(interval, channels, samples) == ct:
        return [("samples", str(samples)), ("update_interval", str(interval))]
    for helper in (samples, *_ina3221.AVERAGING):
        base = round(ct * 2 * channels * helper / 1000)
        for w in (base, base - 1, base + 1):
            if w >= 0 and driver_conversion_us(w, channels, helper) == ct:
                writes = [("samples", str(helper)), ("update_interval", str(w))]
                if helper != samples:
                    writes.append(("samples", str(samples)))
                return writes
    raise SensorError(f"no update_interval gives a {ct} us conversion with {channels} channel(s)")


def _enable_writes(now: dict[int, int], want: dict[int, int]) -> list[tuple[str, str]]:
    ons = [(f"in{n}_enable", "1") for n in sorted(want) if want[n] == 1 and now.get(n) != 1]
    offs = [(f"in{n}_enable", "0") for n in sorted(want) if want[n] == 0 and now.get(n) != 0]
    return ons + offs


def _conversion_us(chip: Chip, root: Path) -> int | None:
    l4t, kernel = _semantics(root)
    cfg = _ina3221.hwmon_config(chip.update_interval, chip.samples, chip.enabled, l4t=l4t,
                                kernel=kernel)
    return None if cfg is None or cfg.assumed else cfg.conversion_us


def plan_writes(root: Path, request: Request) -> list[dict[str, Any]]:
    """Per chip: its original values, the writes in order, and the settings expected after them.

    Raises :class:`SensorError` naming what cannot be done (no hwmon chip, a rail named in
    ``enabled`` that no chip has, a chip that would have no channel left)."""
    found = chips(root)
    if not found:
        raise SensorError(f"no INA3221 hwmon chip under {root / HWMON_GLOB}: only the JetPack 5/6 "
                          "driver ina3221 exposes update_interval, samples and inN_enable")
    problems = []
    if request.enabled is not None:
        known = {lb for c in found for n, lb in c.labels.items() if lb not in SKIP_LABELS}
        unknown = [n for n in request.enabled if n not in known]
        if unknown:
            problems.append(f"rail(s) {', '.join(map(repr, unknown))} not on an INA3221 chip "
                            f"with inN_enable; the chips have: {', '.join(sorted(known)) or '-'}")
    out = []
    for chip in found:
        missing = [f for f in ("update_interval", "samples")
                   if getattr(request, f) is not None and getattr(chip, f) is None]
        if missing:
            problems.append(f"{chip.rel}: no readable {' or '.join(missing)} file")
            continue
        want = dict(chip.enable)
        if request.enabled is not None and any(lb in request.enabled
                                               for lb in chip.labels.values()):
            want = {n: int(lb in request.enabled) for n, lb in chip.labels.items()}
        channels = sum(want.values())
        if channels == 0:
            continue  # nothing converts on this chip: leave it alone
        samples = request.samples if request.samples is not None else int(chip.samples or 1)
        writes = _enable_writes(chip.enable, want)
        if request.samples is not None and request.samples != chip.samples:
            writes.append(("samples", str(request.samples)))
        ct = _conversion_us(chip, root)
        if request.update_interval is not None:
            writes.append(("update_interval", str(request.update_interval)))
            ct = driver_conversion_us(request.update_interval, channels, samples)
        if not writes:
            continue
        original: dict[str, Any] = {**chip.values(), "conversion_us": _conversion_us(chip, root)}
        out.append({"path": chip.rel, "original": original,
                    "writes": [list(w) for w in writes],
                    "expected": {"enabled_channels": [n for n in sorted(want) if want[n]],
                                 "samples": samples, "conversion_us": ct,
                                 "window_us": None if ct is None else ct * samples,
                                 "period_us": None if ct is None else 2 * channels * ct * samples}})
    if problems:
        raise SensorError("; ".join(problems))
    return out


def permission_problem(root: Path, planned: list[dict[str, Any]], euid: int | None = None
                       ) -> str | None:
    """Why these writes cannot be made by this process (None: they can)."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return (f"writing the INA3221's settings needs root (this process runs as uid {euid}): "
                "run jetpower as root (sudo), or remove [sampler.ina3221] to measure with the "
                "chip as it is")
    for chip in planned:
        for name, _ in chip["writes"]:
            f = root / chip["path"] / name
            if not os.access(f, os.W_OK):
                return f"{f} is not writable (a read-only sysfs, or a container without it)"
    return None


# -- the record ----------------------------------------------------------------------------------


def _boot_id(root: Path) -> str | None:
    return _read(root / "proc/sys/kernel/random/boot_id") or \
        _read(Path("/proc/sys/kernel/random/boot_id"))


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_alive(record: dict[str, Any]) -> bool:
    """Whether the process that wrote ``record`` still runs (pid and its start time agree)."""
    owner = record.get("owner") or {}
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    ticks = _start_ticks(pid)
    return ticks is not None and ticks == owner.get("start_ticks")


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def load_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SensorError(f"{path}: cannot read the INA3221 settings record: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            data.get("version") != VERSION:
        raise SensorError(f"{path}: not a {FORMAT} v{VERSION} record")
    return data


def pending(root: Path) -> dict[str, Any] | None:
    """The record of settings not restored yet under ``root`` (None: there is none)."""
    path = root / PENDING
    if not path.exists():
        return None
    return load_record(path)


def apply(root: Path, request: Request, result_dir: Path) -> dict[str, Any]:
    """Write ``request`` to the chips under ``root``; the originals are recorded first.

    Returns the record (state ``applied``), which :func:`restore` takes.  Raises
    :class:`SensorError` when another live process holds settings, or a write fails (what was
    written by then is restored before raising)."""
    planned = plan_writes(root, request)
    why = permission_problem(root, planned)
    if why:
        raise SensorError(why)
    left = pending(root)
    if left is not None and owner_alive(left):
        raise SensorError(f"another jetpower run (pid {left['owner']['pid']}, result directory "
                          f"{left.get('result_dir')}) holds the INA3221 settings: wait for it")
    pid = os.getpid()
    record: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "state": "applying", "root": str(root.absolute()),
        "boot_id": _boot_id(root), "owner": {"pid": pid, "start_ticks": _start_ticks(pid)},
        "result_dir": str(result_dir), "asked": request.to_dict(), "chips": planned,
    }
    local = result_dir / RECORD_NAME
    _write_record(local, record)
    _write_record(root / PENDING, record)
    try:
        for chip in planned:
            for name, value in chip["writes"]:
                _write(root / chip["path"] / name, value)
    except SensorError as e:
        record["restored"] = restore(record, root)
        raise SensorError(f"{e}; what was written is restored") from e
    for chip in planned:
        now = next(c for c in chips(root) if c.rel == chip["path"])
        chip["read_back"] = now.values()
        chip["in_force"] = _in_force(now, root)
        ct_expected, ct_now = chip["expected"]["conversion_us"], chip["in_force"]["conversion_us"]
        chip["confirmed"] = (ct_expected is None or ct_now == ct_expected) and \
            chip["in_force"]["samples"] == chip["expected"]["samples"] and \
            chip["in_force"]["enabled_channels"] == chip["expected"]["enabled_channels"]
    record["state"] = "applied"
    _write_record(local, record)
    _write_record(root / PENDING, record)
    return record


def _in_force(chip: Chip, root: Path) -> dict[str, Any]:
    """The settings the files now describe, as discovery reads them (the reading model's source)."""
    l4t, kernel = _semantics(root)
    cfg = _ina3221.hwmon_config(chip.update_interval, chip.samples, chip.enabled, l4t=l4t,
                                kernel=kernel)
    if cfg is None:
        return {"enabled_channels": [], "samples": chip.samples, "conversion_us": None}
    return {"enabled_channels": list(cfg.enabled), "samples": cfg.samples,
            "conversion_us": cfg.conversion_us, "window_us": cfg.window_us,
            "period_us": cfg.period_us, "update_interval_semantics": cfg.interval_semantics}


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        raise SensorError(f"cannot open {path} to write {value}: {e.strerror or e}") from e
    try:
        os.write(fd, f"{value}\n".encode())
    except OSError as e:
        raise SensorError(f"writing {value} to {path} failed: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if path.stat().st_size > len(value) + 1:  # a plain file (a fake tree): drop any old tail
        os.truncate(path, len(value) + 1)


def rebooted(record: dict[str, Any], root: Path) -> bool:
    """Whether the machine booted again since ``record`` was written (the chip is reset then)."""
    now_boot = _boot_id(root)
    return bool(record.get("boot_id") and now_boot and record["boot_id"] != now_boot)


def restore(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """Put back every chip's original settings; returns what was written and read back.

    The record's ``boot_id`` differing from this boot's means the machine rebooted since: the
    driver has reset the chip, so nothing is written (``obsolete``)."""
    if rebooted(record, root):
        return {"ok": True, "state": "obsolete",
                "reason": "the machine rebooted since the settings were applied: the driver "
                          "reset the chip"}
    out: dict[str, Any] = {"ok": True, "chips": []}
    for chip in record.get("chips", []):
        orig = chip["original"]
        entry: dict[str, Any] = {"path": chip["path"], "writes": [], "differences": []}
        out["chips"].append(entry)
        wrote_interval = any(n == "update_interval" for n, _ in chip["writes"])
        want = {int(n): int(v) for n, v in orig["enable"].items()}
        current = next((c for c in chips(root) if c.rel == chip["path"]), None)
        if current is None:
            entry["differences"].append("the chip's hwmon directory is gone")
            out["ok"] = False
            continue
        writes = _enable_writes(current.enable, want)
        channels = sum(want.values())
        plain = [(k, str(orig[k])) for k in ("samples", "update_interval")
                 if orig.get(k) is not None and (wrote_interval or k == "samples")
                 and getattr(current, k) != orig[k]]  # the files' own values, as they were
        if wrote_interval and orig.get("conversion_us") and channels:
            try:
                plain = _interval_writes(int(orig["conversion_us"]), channels,
                                         int(orig["samples"]), orig["update_interval"])
            except SensorError as e:  # cannot happen for a table conversion time
                entry["differences"].append(str(e))
        writes += plain
        for name, value in writes:
            try:
                _write(root / chip["path"] / name, value)
                entry["writes"].append([name, value])
            except SensorError as e:
                entry["differences"].append(str(e))
        after = next((c for c in chips(root) if c.rel == chip["path"]), None)
        back = after.values() if after else {}
        entry["read_back"] = back
        for key in ("update_interval", "samples", "enable"):
            if back.get(key) != orig.get(key):
                entry["differences"].append(f"{key} reads {back.get(key)}, was {orig.get(key)}")
        out["ok"] = out["ok"] and not entry["differences"]
    out["state"] = "restored" if out["ok"] else "restore_incomplete"
    return out


def finish(record: dict[str, Any], root: Path, result: dict[str, Any]) -> None:
    """Record ``result`` of :func:`restore` in the result directory's record; drop the pending
    copy once restored (an incomplete restore keeps it, for ``jetpower doctor`` to retry)."""
    record["state"] = result["state"]
    record["restored"] = result
    local = Path(str(record.get("result_dir", ""))) / RECORD_NAME
    with contextlib.suppress(OSError):
        if local.parent.is_dir():
            _write_record(local, record)
    if result["ok"]:
        with contextlib.suppress(FileNotFoundError):
            (root / PENDING).unlink()
    else:
        _write_record(root / PENDING, record)


def restore_leftover(root: Path) -> dict[str, Any] | None:
    """Restore the settings a killed run left behind under ``root`` (None: nothing left).

    Returns ``{"record": ..., "result": ...}``; raises :class:`SensorError` when the settings
    are held by a live run or this process may not write them."""
    left = pending(root)
    if left is None:
        return None
    if owner_alive(left):
        raise SensorError(f"the INA3221 settings are held by a live jetpower run (pid "
                          f"{left['owner']['pid']}, result directory {left.get('result_dir')})")
    if os.geteuid() != 0 and not rebooted(left, root):
        raise SensorError(f"a killed jetpower run (result directory {left.get('result_dir')}) "
                          "left the INA3221 settings changed; restoring them needs root: "
                          "sudo jetpower doctor")
    result = restore(left, root)
    result["leftover_of"] = left.get("result_dir")
    finish(left, root, result)
    return {"record": left, "result": result}
