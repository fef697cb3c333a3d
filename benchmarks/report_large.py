"""Time ``jetpower report`` on a large synthetic run: 30000 profiled runs x 200 layers, 1 kHz trace.

    .venv/bin/python benchmarks/report_large.py [--runs N] [--layers N] [--sensor S] [--keep DIR]

Generates the run in a temporary directory (``--sensor point``: tests/synthetic.py, a point-like
source, jetpower layout; ``--sensor ina3221``: tests/ina3221_truth.py through the INA3221
physics, 200 layers of ~40 us, written by tests/ina3221_result.py with a reading model and per-read
stamps, so the report runs the schedule fit and the window-mean estimator), then builds the
report in a fresh child process so its peak RSS is the report's alone.  Prints the seconds of each
stage (load, attribute, plot, write, total) and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _child(result: Path) -> None:
    from jetpower.report import build_report

    res = build_report(result, result.parent / "report")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    layers = sum(len(m.layers) for m in res.report.models)
    methods = sorted({m.layer_method for m in res.report.models})
    refused = sum(r.energy.energy_j is None for m in res.report.models for r in m.layers)
    print(json.dumps({**res.seconds, "peak_rss_mib": rss, "layers": layers, "refused": refused,
                      "methods": methods,
                      "samples": int(res.report.data.t.size)}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30000)
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--keep", type=Path, default=None, help="write here and keep it")
    ap.add_argument("--sensor", choices=("point", "ina3221"), default="point")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        _child(a.child)
        return

    import numpy as np

    from tests.synthetic import SyntheticModel, write_result

    rng = np.random.default_rng(1)
    ms = np.round(rng.lognormal(np.log(0.03), 0.9, a.layers), 4) + 0.002  # ~ 10 ms per run
    model = SyntheticModel(
        "bignet",
        layer_ms=tuple(float(x) for x in ms),
        layer_w=tuple(float(x) for x in rng.uniform(6.0, 14.0, a.layers)),
        timed_runs=a.runs,
        profiled_runs=a.runs,
        compile_s=5.0,
        warmup_s=1.0,
    )
    tmp = tempfile.TemporaryDirectory(prefix="jetpower-bench-") if a.keep is None else None
    base = Path(tmp.name) if tmp is not None else a.keep
    try:
        t = time.perf_counter()
        if a.sensor == "point":
            write_result(base / "result", [model], idle_s=120.0, cooldown_s=10.0)
        else:
            from tests.ina3221_result import write_ina3221_result
            from tests.ina3221_truth import deep_200, generate, resnet18_like

            w = deep_200(a.runs) if a.layers == 200 else resnet18_like(a.runs)
            write_ina3221_result(base / "result", generate(w, seed=3))
        gen = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (base / "result").rglob("*") if f.is_file())
        print(f"generated {a.runs} runs x {a.layers} layers in {gen:.1f} s "
              f"({size / 2**20:.0f} MiB on disk)")  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(base / "result")],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"samples {r['samples']}, layers {r['layers']} ({r['refused']} refused), "
              f"estimator {', '.join(r['methods'])}")
        for k in ("load", "attribute", "plot", "write", "total"):
            print(f"{k:>10}: {r[k]:7.2f} s")
        print(f"  peak RSS: {r['peak_rss_mib']:7.0f} MiB")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
