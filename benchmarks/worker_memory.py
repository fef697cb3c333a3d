"""Peak memory of the profiling pass's bookkeeping: 30000 runs x 200 layers.

Synthetic TensorRT-like callbacks (``report_layer_time(name, ms)`` by name, as the tensorrt backend
receives them) fill a :class:`jetpower.worker.profile.LayerProfile`; the layer latency file is then
streamed to disk.  Prints peak RSS (whole process, so Python + numpy are included), the growth over
the baseline, the arrays' size, and the fill and write times.  Target: under 100 MB.

    .venv/bin/python benchmarks/worker_memory.py [--runs 30000] [--layers 200]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from jetpower.timebase import Anchor, monotonic_ns
from jetpower.worker.output import write_stream
from jetpower.worker.profile import LayerProfile


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30000)
    ap.add_argument("--layers", type=int, default=200)
    args = ap.parse_args()
    base = rss_mb()
    names = [
        f"[CONVOLUTION]-[aten_ops.convolution.default]-[/layer{i}/conv]" for i in range(args.layers)
    ]
    lat = [random.uniform(0.01, 0.5) for _ in names]
    anchor = Anchor.now()
    prof = LayerProfile(names, args.runs)
    t0 = time.perf_counter()
    for r in range(args.runs):
        start = monotonic_ns()
        for n, ms in zip(names, lat, strict=True):
            prof.record_name(r, n, ms)
        prof.finish_run(r, start, start + 10_000_000)
    fill_s = time.perf_counter() - t0
    after_fill = rss_mb()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trt_layer_latency.json"
        t0 = time.perf_counter()
        write_stream(path, lambda fh: prof.write_json(fh, anchor))
        write_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
    peak = rss_mb()
    print(f"runs x layers          {args.runs} x {args.layers}")
    print(f"profile arrays         {prof.nbytes / 1e6:.1f} MB")
    print(f"baseline RSS           {base:.1f} MB")
    print(f"peak RSS after fill    {after_fill:.1f} MB (+{after_fill - base:.1f} MB)")
    print(f"peak RSS after write   {peak:.1f} MB (+{peak - base:.1f} MB)")
    per_report_ns = fill_s / args.runs / args.layers * 1e9
    print(f"fill                   {fill_s:.1f} s ({per_report_ns:.0f} ns/report)")
    print(f"write                  {write_s:.1f} s, file {size_mb:.0f} MB")


if __name__ == "__main__":
    main()
