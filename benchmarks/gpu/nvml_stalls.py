"""Does NVML stall the 1 kHz loop?  The sampler at 1 kHz on the NVML channels jetpower discovers,
at normal priority (as on GPU machines, where SCHED_FIFO is refused), for --seconds (default 60).

Prints the missed-deadline fraction, the histogram of gaps between consecutive records'
``t_start`` (<1.5 ms, 1.5-2, 2-5, 5-10, >10 ms), the largest gap, overruns, and where the NVML
poller thread ran; then one JSON line.  Target: missed deadlines < 0.5 %.

Without NVML (or with --fake) it runs against the fake library of tests/fake_nvml, compiled here
as the tests do, whose energy-counter call holds the CPU busy for --fake-spin-us (default 8000:
a real H200 call takes 3-16 ms), so the degraded run still has a slow call to stall on.
--load CMD runs a command beside it (e.g. a GPU timing loop), stopped at the end.

Usage: python benchmarks/gpu/nvml_stalls.py [--seconds 60] [--fake] [--load "python3 ..."]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jetpower.acquire.process import default_cpu, start_sampler
from jetpower.errors import SensorError
from jetpower.sensors import discover

ROOT = Path(__file__).resolve().parents[2]
FAKE_SRC = ROOT / "tests" / "fake_nvml" / "fake_nvml.c"
BINS_MS = (1.5, 2.0, 5.0, 10.0)
LABELS = ("<1.5 ms", "1.5-2 ms", "2-5 ms", "5-10 ms", ">10 ms")


def build_fake(tmp: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        sys.exit("no NVML here and no C compiler to build the fake NVML library")
    out = tmp / "libnvidia-ml.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(out), str(FAKE_SRC)],
                   check=True)
    return out


def thread_cpus(pid: int) -> dict[str, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except OSError:
            continue
        cpus = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list"))
        key = "loop" if int(task.name) == pid else f"{name}[{task.name}]"
        out[key] = cpus.split(":", 1)[1].strip()
    return out


async def measure(sensor, ring: Path, seconds: float, cpu: int) -> dict:
    parts: list[np.ndarray] = []
    lost = 0
    async with start_sampler(sensor, ring, rate_hz=1000, cpu=cpu, fifo=False) as h:
        await asyncio.sleep(0.5)  # settle: the first NVML readings, the poller moved off
        h.reader.drain()
        threads = thread_cpus(h.proc.pid)
        c0 = h.reader.counters()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.05)
            recs, lo = h.reader.drain()
            lost += lo
            parts.append(recs.t_start_ns.copy())
        elapsed = time.monotonic() - t0
        c1 = h.reader.counters()
        info = h.reader.info
    starts = np.concatenate(parts)
    return {"starts": starts, "elapsed": elapsed, "lost": lost, "threads": threads,
            "missed": c1.missed_deadlines - c0.missed_deadlines,
            "samples": c1.samples - c0.samples, "read_errors": sum(c1.read_errors),
            "sched": f"{info.sched_policy} {info.sched_priority}", "cpu": info.cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fake", action="store_true", help="use the fake NVML library even if a "
                    "real one is present")
    ap.add_argument("--fake-spin-us", type=int, default=8000)
    ap.add_argument("--cpu", type=int, default=None, help="the sampler's CPU (default: last)")
    ap.add_argument("--load", default=None, help="a command to run beside the sampler")
    args = ap.parse_args()
    cpu = default_cpu() if args.cpu is None else args.cpu
    with tempfile.TemporaryDirectory(prefix="jetpower-nvml-stalls-") as tmp_s:
        tmp = Path(tmp_s)
        fake = args.fake
        if not fake:
            try:
                sensor = discover(Path("/"), "nvml")
            except SensorError as e:
                print(f"no NVML here ({e}); running against the fake NVML library")
                fake = True
        if fake:
            os.environ["JETPOWER_NVML_LIB"] = str(build_fake(tmp))
            os.environ["FAKE_NVML_MODE"] = "ok"
            os.environ["FAKE_NVML_COUNT"] = "1"
            os.environ["FAKE_NVML_ENERGY_SPIN_US"] = str(args.fake_spin_us)
            sensor = discover(tmp, "nvml")
        load = None
        if args.load:
            load = subprocess.Popen(shlex.split(args.load), stdout=subprocess.DEVNULL)
            time.sleep(5)  # past its start-up
        try:
            r = asyncio.run(measure(sensor, tmp / "ring", args.seconds, cpu))
        finally:
            if load is not None:
                load.terminate()
                load.wait(10)

    gaps_ms = np.diff(r["starts"]) / 1e6
    hist = np.histogram(gaps_ms, bins=(0.0, *BINS_MS, np.inf))[0]
    slots = r["samples"] + r["missed"]
    missed_pct = 100 * r["missed"] / max(1, slots)
    res = {
        "nvml": "fake" if fake else "real",
        "fake_energy_spin_us": args.fake_spin_us if fake else None,
        "channels": [c.name for c in sensor.channels],
        "devices": [r_.device for r_ in sensor.rails],
        "seconds": r["elapsed"], "cpu": r["cpu"], "sched": r["sched"], "threads": r["threads"],
        "load": args.load,
        "samples": r["samples"], "missed_deadlines": r["missed"], "missed_pct": missed_pct,
        "achieved_hz": r["samples"] / r["elapsed"], "overruns": r["lost"],
        "read_errors": r["read_errors"],
        "gaps": dict(zip(LABELS, (int(x) for x in hist))),
        "gaps_pct": dict(zip(LABELS, (100 * float(x) / max(1, len(gaps_ms)) for x in hist))),
        "max_gap_ms": float(gaps_ms.max()) if len(gaps_ms) else None,
        "p99_gap_ms": float(np.percentile(gaps_ms, 99)) if len(gaps_ms) else None,
        "target_missed_below_0.5pct": missed_pct < 0.5,
    }
    print(f"NVML stalls: {res['nvml']} NVML, channels {', '.join(res['channels'])}")
    print(f"  sampler on CPU {res['cpu']} at {res['sched']}, threads' CPUs: {res['threads']}")
    print(f"  {res['seconds']:.1f} s at 1 kHz: {res['samples']} records, "
          f"{res['achieved_hz']:.1f} Hz, missed deadlines {res['missed_deadlines']} "
          f"({missed_pct:.3f} %), overruns {res['overruns']}, read errors {res['read_errors']}")
    print("  gaps between records:")
    for label in LABELS:
        print(f"    {label:>9}  {res['gaps'][label]:>8}  {res['gaps_pct'][label]:8.3f} %")
    print(f"  largest gap {res['max_gap_ms']:.3f} ms, p99 {res['p99_gap_ms']:.3f} ms")
    print(f"target missed deadlines < 0.5 %: {'ok' if missed_pct < 0.5 else 'MISSED'}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
