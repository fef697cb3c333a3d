"""Find the power rails under a root directory (``/`` on a board; a fake tree in tests).

Sources, tried in this order by ``source="auto"``: INA3221 through hwmon (JetPack 5/6), through
NVIDIA's ``ina3221x`` IIO driver (JetPack 4), NVIDIA GPUs through NVML, Intel RAPL energy counters
(powercap), then generic hwmon power or voltage+current files.  The simulated source is never
picked by ``auto``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from jetpower._native import NVML_LIB_ENV
from jetpower.errors import SensorError
from jetpower.sensors import _ina3221, _nvml, _rapl
from jetpower.sensors._types import Channel, Rail, ReadingModel, SensorSet, TotalRule
from jetpower.sensors.boards import board_info, total_rule

#: labels of INA3221 channels that are not power rails
SKIP_LABELS = frozenset({"NC", "sum of shunt voltages"})

SOURCES = ("auto", "ina3221", "ina3221x", "nvml", "rapl", "hwmon", "simulated")



def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _sorted_devices(pattern: str, root: Path) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_dir())


#: what a generic hwmon value is taken to be: jetpower knows nothing of that chip's conversions
GENERIC_HWMON = ReadingModel(
    "instant", note="generic hwmon chip: taken as instantaneous; its conversion timing is not "
                    "known to jetpower (probe measures how often it changes)")


def _vi_rail(label: str, device: str, v: Path, i: Path, vunit: str = "mV",
             iunit: str = "mA", *, vmodel: ReadingModel = GENERIC_HWMON,
             imodel: ReadingModel = GENERIC_HWMON) -> Rail:
    return Rail(
        label=label,
        device=device,
        derivation="v_x_i",
        voltage=Channel(f"{label}.{vunit}", v, vunit, "voltage", model=vmodel),
        current=Channel(f"{label}.{iunit}", i, iunit, "current", model=imodel),
    )


def _device_facts(hw: Path, device: str) -> dict[str, object]:
    facts: dict[str, object] = {"device": device, "path": str(hw)}
    for name in ("update_interval", "samples"):
        text = _read(hw / name)
        facts[name] = int(text) if text and text.lstrip("-").isdigit() else None
    return facts


def _kernel_release(root: Path) -> str | None:
    return _read(root / "proc/sys/kernel/osrelease")


def _converts(hw: Path, n: int) -> bool:
    """Whether the chip converts channel ``n``: ``inN_enable`` says so; without that file (older
    kernels) every channel is on except those labelled NC, which the driver disables (their
    reads fail with ENODATA)."""
    enable = _read(hw / f"in{n}_enable")
    if enable is not None:
        return enable == "1"
    return _read(hw / f"in{n}_label") != "NC"


def _ina3221_hwmon(root: Path) -> tuple[list[Rail], list[dict[str, object]]]:
    rails: list[Rail] = []
    devices = []
    l4t, kernel = board_info(root)["l4t"], _kernel_release(root)
    for hw in _sorted_devices("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*", root):
        addr = hw.parent.parent.name
        device = f"ina3221 {addr} {hw.name}"
        facts = _device_facts(hw, device)
        enabled = tuple(n for n in (1, 2, 3) if _converts(hw, n))
        chip = _ina3221.hwmon_config(
            facts["update_interval"], facts["samples"], enabled,  # type: ignore[arg-type]
            l4t=l4t, kernel=kernel, where=str(hw.relative_to(root)))
        facts["enabled_channels"] = list(enabled)
        if chip is not None:
            facts["conversion_us"] = chip.conversion_us
            facts["period_us_nominal"] = chip.period_us
        devices.append(facts)
        for n in (1, 2, 3):
            label = _read(hw / f"in{n}_label") or f"{addr}-in{n}"
            if label in SKIP_LABELS or _read(hw / f"in{n}_enable") == "0":
                continue
            v, i = hw / f"in{n}_input", hw / f"curr{n}_input"
            if v.exists() and i.exists() and chip is not None and n in chip.enabled:
                quantum = _ina3221.current_quantum_ma(_ina3221.read_int(hw / f"shunt{n}_resistor"))
                rails.append(_vi_rail(
                    label, f"{device} channel {n}", v, i,
                    vmodel=chip.model(n, "voltage", float(_ina3221.BUS_LSB_MV)),
                    imodel=chip.model(n, "current", quantum)))
    return rails, devices


def _ina3221x_iio(root: Path) -> tuple[list[Rail], list[dict[str, object]]]:
    rails: list[Rail] = []
    devices = []
    for dev in _sorted_devices("sys/bus/i2c/drivers/ina3221x/*/iio:device*", root):
        device = f"ina3221x {dev.parent.name} {dev.name}"
        facts = _device_facts(dev, device)
        mode = _read(dev / "running_mode")
        chip = _ina3221.iio_config(mode)
        facts.update(running_mode=mode, assumed_conversion_us=chip.conversion_us,
                     assumed_samples=chip.samples)
        devices.append(facts)
        for n in range(8):
            label = _read(dev / f"rail_name_{n}")
            if label is None:
                if not (dev / f"in_voltage{n}_input").exists():
                    break
                label = f"{dev.parent.name}-ch{n}"
            if label in SKIP_LABELS:
                continue
            v, i = dev / f"in_voltage{n}_input", dev / f"in_current{n}_input"
            if v.exists() and i.exists():
                ch = n + 1 if n < 3 else None
                vmodel = chip.model(ch, "voltage", float(_ina3221.BUS_LSB_MV)) if ch else \
                    GENERIC_HWMON
                imodel = chip.model(ch, "current", None) if ch else GENERIC_HWMON
                rails.append(_vi_rail(label, f"{device} channel {n}", v, i,
                                      vmodel=vmodel, imodel=imodel))
    return rails, devices


def _generic_hwmon(root: Path) -> tuple[list[Rail], list[dict[str, object]]]:
    rails: list[Rail] = []
    devices = []
    seen: set[Path] = set()
    for hw in _sorted_devices("sys/class/hwmon/hwmon*", root):
        real = hw.resolve()
        if real in seen or _read(hw / "name") in {"ina3221"}:
            continue
        seen.add(real)
        name = _read(hw / "name") or hw.name
        device = f"hwmon {name} {hw.name}"
        found = False
        for p in sorted(hw.glob("power*_input")):
            m = re.fullmatch(r"power(\d+)_input", p.name)
            if not m:
                continue
            label = _read(hw / f"power{m[1]}_label") or f"{name}/power{m[1]}"
            rails.append(Rail(label, device, "power",
                              power=Channel(f"{label}.uW", p, "uW", "power",
                                            model=GENERIC_HWMON)))
            found = True
        if not found:
            for p in sorted(hw.glob("curr*_input")):
                m = re.fullmatch(r"curr(\d+)_input", p.name)
                v = hw / f"in{m[1]}_input" if m else None
                if m and v and v.exists():
                    label = _read(hw / f"curr{m[1]}_label") or f"{name}/ch{m[1]}"
                    rails.append(_vi_rail(label, device, v, p))
                    found = True
        if found:
            devices.append(_device_facts(hw, device))
    return rails, devices


Found = tuple[list[Rail], list[dict[str, object]], str, TotalRule | None]


def _sysfs(finder: Callable[[Path], tuple[list[Rail], list[dict[str, object]]]],
           where: str) -> Callable[[Path], Found]:
    def find(root: Path) -> Found:
        rails, devices = finder(root)
        if not rails:
            return [], [], f"none under {root / where}", None
        n = len(devices)
        return rails, devices, f"{len(rails)} rail(s) on {n} device(s) under {root / where}", None
    return find


_WHERE = {
    "ina3221": "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*",
    "ina3221x": "sys/bus/i2c/drivers/ina3221x/*/iio:device*",
    "nvml": _nvml.WHERE,
    "rapl": _rapl.WHERE,
    "hwmon": "sys/class/hwmon/hwmon* (power*_input, or in*_input with curr*_input)",
}

_FINDERS: dict[str, Callable[[Path], Found]] = {
    "ina3221": _sysfs(_ina3221_hwmon, _WHERE["ina3221"]),
    "ina3221x": _sysfs(_ina3221x_iio, _WHERE["ina3221x"]),
    "nvml": lambda root: _nvml.find_nvml(),
    "rapl": _rapl.find_rapl,
    "hwmon": _sysfs(_generic_hwmon, _WHERE["hwmon"]),
}

#: the order ``auto`` tries: the Jetson's own monitors first, then the host-wide sources
AUTO_ORDER = ("ina3221", "ina3221x", "nvml", "rapl", "hwmon")


def _nvml_in_auto(root: Path) -> bool:
    """NVML is not under ``root``: ``auto`` asks it for the real root, or when told a library."""
    return root == Path("/") or bool(os.environ.get(NVML_LIB_ENV))


def discover(root: Path = Path("/"), source: str = "auto") -> SensorSet:
    """Describe the rails under ``root`` (for ``simulated``, ``root`` is the fake tree).

    ``auto`` tries :data:`AUTO_ORDER` and keeps the first source with rails; NVML, which lives
    outside ``root``, takes part when ``root`` is ``/`` or ``$JETPOWER_NVML_LIB`` names a library.
    ``SensorSet.selected_because`` says which source was picked and why.  A RAPL counter that
    exists but may not be read raises :class:`SensorError` (it is never skipped silently).
    """
    if source not in SOURCES:
        raise SensorError(f"unknown sensor source {source!r}; expected one of {', '.join(SOURCES)}")
    if not root.is_dir():
        raise SensorError(f"sensor root {str(root)!r} does not exist or is not a directory")
    if source == "auto":
        order = [n for n in AUTO_ORDER if n != "nvml" or _nvml_in_auto(root)]
    else:
        order = ["ina3221"] if source == "simulated" else [source]
    passed: list[str] = []
    for name in order:
        rails, devices, note, total = _FINDERS[name](root)
        if not rails:
            passed.append(f"{name}: {note}")
            continue
        labels = tuple(r.label for r in rails)
        if len(set(labels)) != len(labels):
            dup = {lb for lb in labels if labels.count(lb) > 1}
            rails = [_renamed(r, k) if r.label in dup else r for k, r in enumerate(rails)]
            labels = tuple(r.label for r in rails)
        if source == "simulated":
            why = "the simulated source was named explicitly (its numbers are not measurements)"
        elif source == "auto":
            before = f"; passed over: {'; '.join(passed)}" if passed else ""
            why = (f"auto (order: {', '.join(order)}): {name} is the first with rails: "
                   f"{note}{before}")
        else:
            why = f"source {name!r} named explicitly: {note}"
        info = board_info(root)
        return SensorSet(
            source=source if source == "simulated" else name,
            root=root,
            rails=tuple(rails),
            total=total if total is not None else total_rule(labels),
            board=info["board"] if source != "simulated" else "simulated INA3221 board",
            l4t=info["l4t"],
            jetpack=info["jetpack"],
            simulated=source == "simulated",
            devices=tuple(devices),
            selected_because=why,
        )
    looked = "; ".join(passed)
    hint = "" if source == "simulated" else (
        " To try jetpower without sensors: source = \"simulated\" in a plan, or "
        "--simulate for probe and sample."
    )
    raise SensorError(f"no power sensor found; looked in: {looked}.{hint}")


def _renamed(rail: Rail, k: int) -> Rail:
    """Two chips may report rails of the same label: make such labels unique by position."""
    return _vi_rail(f"{rail.label}@{k}", rail.device, rail.voltage.path, rail.current.path,
                    vmodel=rail.voltage.model, imodel=rail.current.model) \
        if rail.voltage and rail.current else rail
