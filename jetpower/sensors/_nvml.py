"""NVIDIA GPUs through NVML: instantaneous (or averaged) board power and the energy counter.

The library is loaded at run time by the C sampler; which one comes from ``$JETPOWER_NVML_LIB``
(default ``libnvidia-ml.so.1``).  A GPU is a power source only when the power call itself works:
on Jetson NVML initialises and then answers NOT_SUPPORTED.
"""

from __future__ import annotations

from pathlib import Path

from jetpower.errors import SamplerError
from jetpower.sensors._types import Channel, Rail, ReadingModel, TotalRule

WHERE = "NVML ($JETPOWER_NVML_LIB, default libnvidia-ml.so.1)"

#: reading models of the three NVML readings (csrc/jp_sampler.h); the driver refreshes each at a
#: period of its own, which NVML does not document (probe measures how often values change)
POWER_INSTANT = ReadingModel(
    "instant", quantum=1.0, read="latest_value",
    note="NVML_FI_DEV_POWER_INSTANT: the driver's latest instantaneous reading; its refresh "
         "period is not documented (probe measures it); polled by the sampler every 10 ms")
POWER_AVG = ReadingModel(
    "window_mean", window_us=1_000_000.0, held=None, quantum=1.0, read="latest_value",
    note="nvmlDeviceGetPowerUsage: on Ampere and newer (except GA100) the mean over the last "
         "1 s, a moving window the driver refreshes at an undocumented period (no schedule); "
         "on older GPUs an instantaneous value. Every window spans many inferences: per-layer "
         "power is not identifiable from it")
ENERGY = ReadingModel(
    "counter", quantum=1.0, read="latest_value",
    note="nvmlDeviceGetTotalEnergyConsumption: mJ since the driver loaded; polled by the "
         "sampler every 50 ms")


def find_nvml() -> tuple[list[Rail], list[dict[str, object]], str, TotalRule | None]:
    """Rails, device facts, a note saying what was found (or why nothing), and the total rule."""
    try:
        from jetpower import _native
    except SamplerError as e:  # pragma: no cover - only without a build
        return [], [], str(e), None
    lib = _native.nvml_library()
    try:
        gpus = _native.nvml_probe(lib)
    except SamplerError as e:
        return [], [], str(e), None
    if not gpus:
        return [], [], f"NVML ({lib}) initialised but reports no GPU", None
    name_of = _native.nvml_return_name
    rails: list[Rail] = []
    devices: list[dict[str, object]] = []
    refused: list[str] = []
    for g in gpus:
        label = f"GPU{g.index}"
        device = f"nvml {g.index} {g.name}"
        if g.instant_rc == 0:
            power = Channel(f"{label}.mW", Path(f"nvml:{g.index}:power_instant"), "mW", "power",
                            model=POWER_INSTANT,
                            about="NVML field NVML_FI_DEV_POWER_INSTANT (186), GPU scope")
        elif g.usage_rc == 0:
            power = Channel(f"{label}.mW", Path(f"nvml:{g.index}:power_avg"), "mW", "power",
                            model=POWER_AVG,
                            about="nvmlDeviceGetPowerUsage (instant power field answered "
                                  f"{name_of(g.instant_rc)}); a 1 s average on Ampere and newer")
        else:
            refused.append(f"{label} ({g.name}) answered {name_of(g.usage_rc)} to "
                           "nvmlDeviceGetPowerUsage and "
                           f"{name_of(g.instant_rc)} to the instant power field")
            continue
        energy = None
        if g.energy_rc == 0:
            energy = Channel(f"{label}.mJ", Path(f"nvml:{g.index}:energy"), "mJ", "energy",
                             model=ENERGY,
                             about="nvmlDeviceGetTotalEnergyConsumption, mJ since the driver "
                                   "loaded")
        rails.append(Rail(label, device, "power", power=power, energy=energy))
        devices.append({
            "device": device, "path": lib, "index": g.index, "name": g.name,
            "power_instant": name_of(g.instant_rc), "power_usage": name_of(g.usage_rc),
            "energy_counter": name_of(g.energy_rc), "update_interval": None, "samples": None,
        })
    if not rails:
        why = "; ".join(refused)
        jetson = " (as on Jetson, where NVML has no power readings)" if all(
            g.usage_rc == _native.NVML_NOT_SUPPORTED for g in gpus) else ""
        return [], [], (f"NVML ({lib}) initialised, but no GPU gives its power{jetson}: {why}; "
                        "NVML is not a power source here"), None
    note = f"{len(rails)} GPU(s) with power readings through NVML ({lib})"
    if refused:
        note += f"; without: {'; '.join(refused)}"
    labels = tuple(r.label for r in rails)
    total = TotalRule(labels, "the only GPU (its board power as NVML reports it)"
                      if len(labels) == 1 else
                      "sum of the GPUs' board power as NVML reports it; the host's CPU and "
                      "memory are not included")
    return rails, devices, note, total
