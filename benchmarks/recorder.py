"""Recorder throughput: records per second the recorder decodes, feeds to a window sink and
writes to the samples CSV, against twice the highest rate a plan may ask for (2 x MAX_RATE_HZ).

The records are synthetic (a ring's exact layout, changing values, every channel valid) for each
sensor given, so that the figure is the recorder's own cost and not the sampler's: they are
handed to the real :class:`~jetpower.acquire.recorder.Recorder` through a stand-in reader that
returns them as the ring would (batches, counters), and the CSV is written to a real file.

Usage: python benchmarks/recorder.py [--records 400000]; prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from jetpower._native import MAX_RATE_HZ, Records, record_dtype
from jetpower.acquire.decode import Decoder
from jetpower.acquire.recorder import Recorder, WindowSink
from jetpower.sensors import SensorSet, discover
from jetpower.sensors.simulate import create_tree, write_tree


class _Reader:
    """Hands out a prepared record array the way RingReader.drain does."""

    def __init__(self, array: np.ndarray, nchan: int) -> None:
        self.array, self.nchan, self.position = array, nchan, 0

    def counters(self) -> Any:
        return SimpleNamespace(samples=len(self.array))

    def drain(self, max_records: int = 65536) -> tuple[Records, int]:
        part = self.array[self.position:self.position + max_records]
        self.position += len(part)
        return Records(part, self.nchan), 0

    def current_rate(self) -> float:
        return float(MAX_RATE_HZ)


def _records(nchan: int, n: int) -> np.ndarray:
    a = np.zeros(n, record_dtype(nchan))
    t = 1_000_000_000 + np.arange(n, dtype=np.int64) * 10_000
    a["seq"] = np.arange(n)
    a["t_start_ns"], a["t_end_ns"] = t, t + 3_000
    a["valid_mask"] = (1 << nchan) - 1
    rng = np.random.default_rng(0)
    a["values"] = 4000 + rng.integers(0, 2000, (n, nchan))
    return a


async def _measure(sensor: SensorSet, n: int, out: Path) -> dict[str, Any]:
    nchan = len(sensor.channels)
    reader = _Reader(_records(nchan, n), nchan)
    handle = SimpleNamespace(reader=reader)
    decoder = Decoder(sensor)
    csv = out / f"{sensor.source}-{nchan}.csv"
    t0 = time.perf_counter()
    async with Recorder(handle, decoder, csv) as rec:  # type: ignore[arg-type]
        rec.sinks.append(WindowSink(0, rule=decoder.integration_rule))
        await rec.drain()
    took = time.perf_counter() - t0
    return {"sensor": sensor.source, "rails": len(sensor.rails), "channels": nchan,
            "records": rec.samples, "seconds": round(took, 3),
            "records_per_s": round(rec.samples / took), "csv_bytes": csv.stat().st_size}


def _agx_orin(root: Path) -> SensorSet | None:
    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    for p in [*fixture.rglob("agx_orin_jp6*.json"),
              *Path("/work/shared/fixtures/sysfs").glob("agx_orin_jp6*.json")]:
        try:
            board = json.loads(p.read_text())
            write_tree(root, board["files"], board.get("symlinks", {}))
            return discover(root, "ina3221").select(None, None)
        except (OSError, ValueError, KeyError):
            continue
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=400_000)
    args = ap.parse_args()
    target = 2 * MAX_RATE_HZ
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sensors = [discover(create_tree(Path(tmp) / "sim"), "simulated").select(None, None)]
        orin = _agx_orin(Path(tmp) / "orin")
        if orin is not None:
            sensors.append(orin)
        for sensor in sensors:
            results.append(asyncio.run(_measure(sensor, args.records, Path(tmp))))
    print(f"{'sensor':<12}{'rails':>6}{'chans':>6}{'records/s':>12}{'vs 2x max':>11}")
    for r in results:
        print(f"{r['sensor']:<12}{r['rails']:>6}{r['channels']:>6}{r['records_per_s']:>12}"
              f"{r['records_per_s'] / target:>10.2f}x")
    print(json.dumps({"target_records_per_s": target, "max_rate_hz": MAX_RATE_HZ,
                      "results": results}))


if __name__ == "__main__":
    main()
