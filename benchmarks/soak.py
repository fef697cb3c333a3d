"""Soak: the real sampler at 10 kHz on the simulated sensor, drained by the real recorder into a
samples CSV, for --minutes (default 10).  Prints the recorder process's RSS at the start and the
end, records sampled, written, lost to overruns, missed deadlines, and the gaps the health watch
saw; then one JSON line.  Usage: python benchmarks/soak.py [--minutes 10] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from jetpower.acquire.decode import Decoder
from jetpower.acquire.health import GapWatch, default_max_gap_s
from jetpower.acquire.recorder import sensor_source
from jetpower.acquire.session import ring_directory, session


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def _soak(minutes: float, rate: float, out: Path) -> dict[str, Any]:
    async with sensor_source(source="simulated") as sensor:
        decoder = Decoder(sensor)
        watch = GapWatch(int(default_max_gap_s(rate) * 1e9))
        capacity = int(rate * 4)
        with ring_directory(capacity, len(sensor.channels)) as ring_dir:
            async with session(decoder, ring_dir / "soak.ring", out / "samples.csv",
                               rate_hz=rate, cpu=None, capacity=capacity, watch=watch) as s:
                await asyncio.sleep(5)  # imports, first batches, allocator settled
                rss0, t0 = _rss_kib(), time.monotonic()
                samples0 = s.recorder.samples
                while time.monotonic() - t0 < minutes * 60:
                    await asyncio.sleep(1)
                rss1 = _rss_kib()
                await s.recorder.drain_now()
                c = s.handle.reader.counters()
                elapsed = time.monotonic() - t0
                written = s.recorder.samples - samples0
                lost = s.recorder.lost
        return {"minutes": round(elapsed / 60, 2), "rate_hz": rate,
                "rss_start_kib": rss0, "rss_end_kib": rss1, "rss_growth_kib": rss1 - rss0,
                "sampled": c.samples, "written_in_window": written,
                "achieved_rate_hz": round(written / elapsed, 1),
                "lost": lost, "overruns": c.overruns, "missed_deadlines": c.missed_deadlines,
                "gaps": [g.to_dict() for g in watch.gaps],
                "csv_mib": round((out / "samples.csv").stat().st_size / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10_000.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jetpower-soak-") as tmp:
        r = asyncio.run(_soak(args.minutes, args.rate, Path(tmp)))
    print(f"soak {r['minutes']} min at {r['rate_hz']:g} Hz: RSS {r['rss_start_kib']} -> "
          f"{r['rss_end_kib']} KiB ({r['rss_growth_kib']:+d}), lost {r['lost']} records "
          f"(overruns {r['overruns']}), missed deadlines {r['missed_deadlines']}, "
          f"achieved {r['achieved_rate_hz']} Hz, gaps {len(r['gaps'])}, CSV {r['csv_mib']} MiB")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
