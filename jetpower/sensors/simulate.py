"""The simulated source: a fake INA3221 hwmon tree whose files a generator rewrites in place.

The real C sampler reads it exactly as it reads a board, so everything downstream of the sensor is
exercised for real.  Power follows this machine's CPU load (from ``/proc/stat``) so a benchmark
shows up in the trace, plus a little noise.  Its numbers are never measurements: every run on it
says so in its log, manifest and report.

Run as ``python -m jetpower.sensors.simulate ROOT`` (the supervisor owns it as a child process).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time
from collections.abc import Mapping
from pathlib import Path

HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon0"
#: label -> (idle mW, extra mW at full CPU load, mV)
RAILS: dict[str, tuple[float, float, int]] = {
    "VDD_IN": (3200.0, 4200.0, 5048),
    "VDD_CPU_GPU_CV": (650.0, 3400.0, 5040),
    "VDD_SOC": (900.0, 350.0, 5040),
}
UPDATE_INTERVAL_MS = 7
_WIDTH = 12  # values are written fixed-width so an in-place rewrite never leaves a stale tail


def write_tree(root: Path, files: Mapping[str, str], symlinks: Mapping[str, str] = {}) -> None:
    """Create a sysfs-like tree of real files (and symlinks) under ``root``."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content + "\n")
    for rel, target in symlinks.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_symlink():
            p.symlink_to(target)


def _fixed(v: int) -> str:
    return f"{v:<{_WIDTH - 1}d}"


def create_tree(root: Path) -> Path:
    """Write the fake board under ``root``; returns ``root``."""
    hw = f"{HWMON}"
    files: dict[str, str] = {
        "sys/bus/i2c/drivers/ina3221/1-0040/name": "ina3221",
        f"{hw}/name": "ina3221",
        f"{hw}/update_interval": str(UPDATE_INTERVAL_MS),
        f"{hw}/samples": "1",
        f"{hw}/in7_label": "sum of shunt voltages",
        "proc/device-tree/model": "jetpower simulated INA3221 board",
        "sys/class/thermal/thermal_zone0/type": "cpu-thermal",
        "sys/class/thermal/thermal_zone0/temp": "40000",
    }
    for n, (label, (idle_mw, _, mv)) in enumerate(RAILS.items(), start=1):
        files[f"{hw}/in{n}_label"] = label
        files[f"{hw}/in{n}_enable"] = "1"
        files[f"{hw}/in{n}_input"] = _fixed(mv)
        files[f"{hw}/curr{n}_input"] = _fixed(round(idle_mw * 1000 / mv))
    write_tree(root, files, {"sys/class/hwmon/hwmon0": f"../../{HWMON.removeprefix('sys/')}"})
    return root


class _CpuLoad:
    """Busy fraction of all CPUs since the previous call, from /proc/stat."""

    def __init__(self) -> None:
        self.prev = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                parts = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return (0, 0)
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle

    def __call__(self) -> float:
        cur = self._read()
        total, idle = cur[0] - self.prev[0], cur[1] - self.prev[1]
        self.prev = cur
        return 0.0 if total <= 0 else max(0.0, min(1.0, 1.0 - idle / total))


def run_generator(root: Path, *, seed: int | None = None, stop_after: float | None = None) -> None:
    """Rewrite the tree's value files in place every update interval until SIGTERM/SIGINT."""
    hw = root / HWMON
    fds = []
    for n in range(1, len(RAILS) + 1):
        fds.append((os.open(hw / f"in{n}_input", os.O_WRONLY),
                    os.open(hw / f"curr{n}_input", os.O_WRONLY)))
    rng = random.Random(seed)
    load = _CpuLoad()
    busy = 0.0
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    period = UPDATE_INTERVAL_MS / 1000
    start = next_t = time.monotonic()
    last_load = start
    while not stop and (stop_after is None or time.monotonic() - start < stop_after):
        now = time.monotonic()
        if now - last_load >= 0.05:
            busy = 0.7 * busy + 0.3 * load()
            last_load = now
        for (vfd, ifd), (idle_mw, extra_mw, mv) in zip(fds, RAILS.values()):
            volts = mv + rng.randint(-8, 8)
            mw = (idle_mw + extra_mw * busy) * (1 + rng.gauss(0, 0.01))
            os.pwrite(vfd, _fixed(volts).encode(), 0)
            os.pwrite(ifd, _fixed(max(0, round(mw * 1000 / volts))).encode(), 0)
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    for pair in fds:
        for fd in pair:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m jetpower.sensors.simulate")
    ap.add_argument("root", type=Path)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--create", action="store_true", help="write the tree first")
    args = ap.parse_args()
    from jetpower._process import die_with_parent

    die_with_parent()  # never outlive the supervisor, even one that is SIGKILLed
    if args.create:
        create_tree(args.root)
    print("ready", flush=True)
    run_generator(args.root, seed=args.seed)


if __name__ == "__main__":
    main()
