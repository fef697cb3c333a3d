"""NVML facts of this GPU (uses nvidia-ml-py): which power readings answer, what one read costs,
and how often each value actually changes.  Usage: python benchmarks/gpu/nvml_facts.py"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pynvml as nv

FI_DEV_POWER_INSTANT = 186
FI_DEV_POWER_AVERAGE = 185


def characterise(read: Callable[[], int], seconds: float = 1.0) -> dict[str, float | None]:
    t0 = time.perf_counter()
    vals, stamps = [], []
    while time.perf_counter() - t0 < seconds:
        vals.append(read())
        stamps.append(time.perf_counter())
    changes = [stamps[i] for i in range(1, len(vals)) if vals[i] != vals[i - 1]]
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    return {"reads": len(vals), "read_us": 1e6 * seconds / len(vals), "changes": len(changes),
            "median_change_ms": 1e3 * gaps[len(gaps) // 2] if gaps else None}


def main() -> None:
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    print("name", nv.nvmlDeviceGetName(h), "driver", nv.nvmlSystemGetDriverVersion())
    print("power_usage_mW", nv.nvmlDeviceGetPowerUsage(h),
          "energy_mJ", nv.nvmlDeviceGetTotalEnergyConsumption(h))
    for f in nv.nvmlDeviceGetFieldValues(h, [FI_DEV_POWER_INSTANT, FI_DEV_POWER_AVERAGE]):
        print("field", f.fieldId, "ret", f.nvmlReturn, "value", f.value.uiVal)
    readers = {
        "instant": lambda: nv.nvmlDeviceGetFieldValues(h, [FI_DEV_POWER_INSTANT])[0].value.uiVal,
        "usage": lambda: nv.nvmlDeviceGetPowerUsage(h),
        "energy": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
    }
    for name, read in readers.items():
        print(name, characterise(read))


if __name__ == "__main__":
    main()
