"""Intel RAPL energy counters through powercap: ``sys/class/powercap/intel-rapl:*``.

Each zone (``intel-rapl:0`` a package, ``intel-rapl:0:0`` one of its sub-zones) has a ``name``
and an ``energy_uj`` counter that wraps at ``max_energy_range_uj``.  A zone becomes a ``counter``
rail: power is derived from counter differences over monotonic time (see
:class:`jetpower.acquire.decode.Decoder`).  Since the PLATYPUS mitigation most kernels make
``energy_uj`` readable by root only; discovery says so instead of skipping the zones.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from jetpower.errors import SensorError
from jetpower.sensors._types import Channel, Rail, ReadingModel, TotalRule

POWERCAP = "sys/class/powercap"
WHERE = f"{POWERCAP}/intel-rapl:* (energy_uj)"
_ZONE = re.compile(r"intel-rapl:(\d+(?::\d+)*)")
#: a RAPL zone's energy_uj: a running total the package updates about every millisecond
COUNTER_MODEL = ReadingModel(
    "counter", quantum=None, read="latest_value",
    note="RAPL energy counter: a running total in uJ (the hardware's energy unit is finer), "
         "updated by the package about every 1 ms; wraps at max_energy_range_uj + 1")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _zones(root: Path) -> list[tuple[tuple[int, ...], Path]]:
    found: dict[tuple[int, ...], Path] = {}
    base = root / POWERCAP
    for p in base.glob("intel-rapl:*"):
        m = _ZONE.fullmatch(p.name)
        if m and p.is_dir():
            found.setdefault(tuple(int(x) for x in m[1].split(":")), p)
    return sorted(found.items())


def _check_readable(path: Path) -> str | None:
    """Raise SensorError for a counter this user may not read; a note for other failures."""
    try:
        with path.open("rb") as f:
            text = f.read(64).strip()
    except PermissionError as e:
        raise SensorError(
            f"RAPL energy counter {path} exists but is not readable by this user ({e.strerror}): "
            "most kernels let only root read powercap energy_uj. Run jetpower as root, or make "
            "the counters readable until the next boot with 'sudo chmod a+r "
            "/sys/class/powercap/intel-rapl:*/energy_uj', or for good with a udev rule such as "
            'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r '
            '/sys%p/energy_uj"'
        ) from e
    except OSError as e:
        return f"{path}: {e.strerror or errno.errorcode.get(e.errno or 0, 'error')}"
    if not text.isdigit():
        return f"{path}: not a counter ({text[:20]!r})"
    return None


def find_rapl(root: Path) -> tuple[list[Rail], list[dict[str, object]], str, TotalRule | None]:
    """Rails, device facts, a note saying what was found (or why nothing), and the total rule."""
    zones = _zones(root)
    if not zones:
        return [], [], f"no zone under {root / POWERCAP}", None
    names = {zid: _read(p / "name") or p.name for zid, p in zones}
    rails: list[Rail] = []
    devices: list[dict[str, object]] = []
    problems: list[str] = []
    for zid, zone in zones:
        energy = zone / "energy_uj"
        if not energy.exists():
            problems.append(f"{zone.name}: no energy_uj")
            continue
        problem = _check_readable(energy)
        if problem:
            problems.append(problem)
            continue
        name = names[zid]
        label = name if len(zid) == 1 else f"{names.get(zid[:1], f'zone{zid[0]}')}/{name}"
        rng = _read(zone / "max_energy_range_uj")
        wrap = int(rng) + 1 if rng and rng.isdigit() and int(rng) > 0 else None
        device = f"powercap {zone.name}"
        rails.append(Rail(
            label, device, "counter",
            energy=Channel(
                f"{label}.uJ", energy, "uJ", "energy", model=COUNTER_MODEL, wrap=wrap,
                about=f"RAPL {name} energy counter (powercap energy_uj), wraps at "
                      f"max_energy_range_uj = {rng}",
            ),
        ))
        devices.append({"device": device, "path": str(zone), "zone": name,
                        "max_energy_range_uj": wrap - 1 if wrap else None,
                        "update_interval": None, "samples": None})
    if not rails:
        return [], [], "RAPL zones without a usable counter: " + "; ".join(problems), None
    note = f"{len(rails)} RAPL zone(s) with energy counters"
    if problems:
        note += f" (skipped: {'; '.join(problems)})"
    return rails, devices, note, _total(rails)


def _total(rails: list[Rail]) -> TotalRule:
    labels = [r.label for r in rails]
    if "psys" in labels:
        return TotalRule(("psys",), "the platform (psys) zone covers the whole SoC; the package "
                         "zones are inside it and are not added")
    top = [lb for lb in labels if "/" not in lb]
    dram = [lb for lb in labels if lb.endswith("/dram")]
    total = tuple(top + dram) or tuple(labels)
    return TotalRule(total, "sum of the package zones and the DRAM zones (DRAM is outside the "
                     "package domain); core, uncore and other sub-zones are inside their package "
                     "and are not added")
