"""Check probe's per-layer estimate (``jetpower/acquire/allowance.py``) against the known-truth
INA3221 emulation (``tests/ina3221_truth.py``) read by the estimator (``report/deconvolve.py``).

For each chip setting: the per-layer energy error the estimator really makes (median, for the
layers shorter and longer than 50 us) beside what the formula predicts for those layers, and
the per-equation noise that would make the formula exact on that data (``sigma_fit``; the
formula uses one constant for all, ``SIGMA_EFF_W``).  Runs here on the CPU (about a minute);
``--quick`` uses 1000 runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jetpower.acquire import allowance as A  # noqa: E402
from jetpower.report.deconvolve import ProfiledRuns, RailReads, estimate_layers  # noqa: E402
from jetpower.report.schedule import ReadingModel  # noqa: E402
from tests import ina3221_truth as T  # noqa: E402

#: (channels, conversion us, read rate Hz, files per pass)
CONFIGS = ((3, 1100, 1000.0, 6), (1, 588, 2000.0, 2), (1, 332, 3000.0, 1), (1, 140, 4000.0, 1))


def one(channels: int, conv_us: int, rate: float, files: int, runs: int, seed: int) -> str:
    w = T.resnet18_like(runs=runs)
    d = T.generate(w, T.Chip(channels=channels, conv_us=conv_us),
                   T.Sampler(rate_hz=rate, files=files, current_file=min(1, files - 1),
                             voltage_file=0), seed=seed)
    model = ReadingModel.ina3221(enabled=tuple(range(1, channels + 1)), shunt_us=conv_us,
                                 bus_us=conv_us)
    t = time.perf_counter()
    fit = estimate_layers(RailReads(d.read_start_ns, d.current_ma, d.voltage_mv), model,
                          ProfiledRuns(tuple(f"l{i}" for i in range(len(w.layer_us))),
                                       d.layer_start_ns, d.layer_end_ns),
                          d.truth.idle_w, n_boot=50)
    took = time.perf_counter() - t
    est = np.array([np.nan if x.energy_j is None else x.energy_j for x in fit.layers])
    err = np.abs(est - d.truth.layer_energy_j) / d.truth.layer_energy_j
    dur = d.truth.layer_latency_s * 1e6
    x = d.truth.layer_net_w
    period = 2 * channels * conv_us
    eq = max(period, 1e6 / rate)
    g = np.array([A.overlap_integral(float(v), conv_us) for v in dur])
    pred = 0.6745 * A.SIGMA_EFF_W / (x * np.sqrt(runs * g / eq))
    sigma_fit = np.nanmedian(err * x * np.sqrt(runs * g / eq)) / 0.6745
    short, long_ = dur < 50, dur >= 50
    return (f"{channels} ch x {conv_us:>4} us @ {rate:>5.0f} Hz  {runs:>5} runs  "
            f"<50 us: {np.nanmedian(err[short]):6.1%} (predicted {np.nanmedian(pred[short]):6.1%})"
            f"  >=50 us: {np.nanmedian(err[long_]):6.2%} (predicted "
            f"{np.nanmedian(pred[long_]):6.2%})  sigma_fit {sigma_fit:.2f} W  fit {took:.1f} s"
            f"{'' if fit.summary.ok else '  REFUSED: ' + fit.summary.reason}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1000 runs instead of 1000 and 3000")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print(f"formula: sigma_eff {A.SIGMA_EFF_W} W; errors are medians of |estimate/truth - 1| "
          "of the per-layer net energy")
    for runs in (1000,) if args.quick else (1000, 3000):
        for c in CONFIGS:
            print(one(*c, runs=runs, seed=args.seed), flush=True)


if __name__ == "__main__":
    main()
