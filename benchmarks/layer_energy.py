"""Per-layer energy on known truth with INA3221 physics: the old in-window estimator vs the new one.

    .venv/bin/python benchmarks/layer_energy.py [--quick] [--layers 29 200] [--runs 1000 ...]

Generates profiling passes with tests/ina3221_truth.py (the chip's conversion sequence, window
means, hold, quantisation, a drifting oscillator, a 1 kHz sampler with per-read stamps, outlier
runs) for 29 layers (resnet18-like, 11-500 us) and 200 layers (~40 us), at 1000, 3000, 10000 and
30000 profiled runs, and prints per estimator: the per-layer energy error over the layers of
>= 50 us (median, p90, max), the 95 % interval coverage over them, the layers refused (all), the
sum of layer energies against the energy per inference, and the estimator's time and peak memory
(tracemalloc: numpy's buffers included).  ``--quick``: 29 and 200 layers at 1000 and 3000 runs.

Targets (issue 10): 30000 runs, layers >= 50 us: median <= 2 %, p90 <= 10 %, coverage >= 90 %,
none refused; 3000 runs: median <= 5 %; sum of layers within 2 % of the energy per inference.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jetpower.report.attribution import attribute_layers  # noqa: E402
from jetpower.report.deconvolve import ProfiledRuns, RailReads, estimate_layers  # noqa: E402
from jetpower.report.schedule import ReadingModel  # noqa: E402
from tests.ina3221_truth import Dataset, deep_200, generate, resnet18_like  # noqa: E402

MIN_US = 50.0


def _measure(fn: Any) -> tuple[Any, float, float]:
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def old_estimator(ds: Dataset) -> list[tuple[float | None, float | None]]:
    """The in-window rule: each read's power at its pass mid-point, attributed to the layer that
    runs then (report/attribution.py)."""
    t = ds.pass_mid_ns.astype(np.float64) * 1e-9
    p = ds.current_ma * ds.voltage_mv  # uW
    L = ds.layer_start_ns.shape[1]
    win = {str(j): (ds.layer_start_ns[:, j] * 1e-9, ds.layer_end_ns[:, j] * 1e-9)
           for j in range(L)}  # fmt: skip
    res = attribute_layers(t, p, win, ds.truth.idle_w * 1e6)
    return [(r.energy_j, r.ci_energy_j) for r in res]


def new_estimator(ds: Dataset) -> tuple[list[tuple[float | None, float | None]], Any]:
    reads = RailReads(ds.read_start_ns, ds.current_ma, ds.voltage_mv)
    runs = ProfiledRuns(tuple(str(j) for j in range(ds.layer_start_ns.shape[1])),
                        ds.layer_start_ns, ds.layer_end_ns)  # fmt: skip
    fit = estimate_layers(reads, ReadingModel.ina3221(), runs, ds.truth.idle_w)
    return [(x.energy_j, x.ci_j) for x in fit.layers], fit.summary


def score(ds: Dataset, est: list[tuple[float | None, float | None]]) -> dict[str, float]:
    tr = ds.truth
    big = tr.layer_latency_s * 1e6 >= MIN_US
    err, cov = [], []
    refused = 0
    total = 0.0
    for j, (e, ci) in enumerate(est):
        if e is None:
            refused += 1
            continue
        total += e
        if big[j]:
            err.append(abs(e - tr.layer_energy_j[j]) / tr.layer_energy_j[j])
            cov.append(ci is not None and abs(e - tr.layer_energy_j[j]) <= ci)
    a = np.asarray(err) * 100
    nan = math.nan
    return {"median": float(np.median(a)) if a.size else nan,
            "p90": float(np.percentile(a, 90)) if a.size else nan,
            "max": float(a.max()) if a.size else nan,
            "coverage": 100 * float(np.mean(cov)) if cov else nan,
            "refused": refused, "big": int(big.sum()),
            "sum_vs_inference": 100 * (total / tr.inference_energy_j - 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="29 and 200 layers, 1000 and 3000 runs")
    ap.add_argument("--layers", type=int, nargs="+", default=[29, 200], choices=[29, 200])
    ap.add_argument("--runs", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    runs = [1000, 3000] if a.quick else a.runs
    head = (f"{'layers':>6} {'runs':>6} {'estimator':>9} | {'median%':>7} {'p90%':>7} "
            f"{'max%':>7} {'cover%':>6} {'refused':>7} {'sum-vs-inf%':>11} | {'time s':>7} "
            f"{'peak MiB':>8}")  # fmt: skip
    print(f"per-layer energy error over layers >= {MIN_US:g} us; 1 kHz sampler, INA3221 "
          "physics (tests/ina3221_truth.py)")
    print(head)
    print("-" * len(head))
    for L in a.layers:
        for R in runs:
            w = resnet18_like(R) if L == 29 else deep_200(R)
            ds = generate(w, seed=a.seed)
            old, t_old, m_old = _measure(lambda ds=ds: old_estimator(ds))
            (new, summ), t_new, m_new = _measure(lambda ds=ds: new_estimator(ds))
            for name, est, t, m in (("old", old, t_old, m_old), ("new", new, t_new, m_new)):
                s = score(ds, est)
                print(f"{L:>6} {R:>6} {name:>9} | {s['median']:7.2f} {s['p90']:7.2f} "
                      f"{s['max']:7.1f} {s['coverage']:6.0f} {s['refused']:>3}/{L:<3} "
                      f"{s['sum_vs_inference']:11.2f} | {t:7.2f} {m:8.0f}", flush=True)
            if not summ.ok:
                print(f"{'':>6} {'':>6} {'new':>9} | refused: {summ.reason}")
            del ds, old, new


if __name__ == "__main__":
    main()
