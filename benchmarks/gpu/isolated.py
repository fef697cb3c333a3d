"""Isolated per-layer energy (issue 14) through the real worker: resnet18 and mobilenet_v2 at
float16, then resnet18 again for run-to-run agreement.

Usage: python benchmarks/gpu/isolated.py [--out DIR] [--periods 2] [--repetitions 3]
                                         [--models resnet18,mobilenet_v2] [--repeat resnet18]

Each model goes through ``jetpower.worker.runner.run`` (timing pass, profiling pass, isolation
pass) with ``layer_energy = "isolated"``; the isolation pass's cap is its own estimate plus 15 %,
so that no precision-driven extra round pushes the whole run past about 6 minutes of GPU time.
Printed per model: every layer's energy per execution with its 95 % interval, whether a CUDA
graph was used, the sum of the layers against the whole model (the ratio), the pass's duration;
then, between the two runs of the repeated model, the median relative difference per layer and
how many layers' intervals overlap.  The result files stay in ``--out``.

Without CUDA (here) it runs degraded: tinycnn and lenet on the CPU against the simulated counter,
whose true energy per execution is known and printed beside the measured one.  Those numbers are
not measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from jetpower.worker import isolate, runner
from jetpower.worker.config import WorkerConfig
from jetpower.worker.progress import Progress
from jetpower.worker.torch_backend import TorchBackend


class Backend(TorchBackend):
    """The torch backend with the benchmark's isolation settings (periods, repetitions, cap)."""

    periods = 2
    repetitions = 3

    def isolation_settings(self) -> isolate.Settings:
        base = super().isolation_settings()
        layers = len(self._leaves) + 8  # shared modules add calls; a little over is fine
        s = isolate.Settings(
            precision=base.precision,
            max_seconds=1e9,
            periods=self.periods,
            repetitions=self.repetitions,
        )
        period = 0.1 if self.cuda else 0.02
        cap = 1.15 * isolate.estimate_seconds(layers, s, period)
        return isolate.Settings(
            precision=base.precision,
            max_seconds=min(cap, base.max_seconds),
            periods=self.periods,
            repetitions=self.repetitions,
        )


def run_model(model: str, out: Path, label: str, cuda: bool) -> tuple[dict[str, Any], Any]:
    cfg = WorkerConfig(
        model=model,
        label=label,
        result_dir=str(out),
        backend="torch",
        device="cuda" if cuda else "cpu",
        dtype="float16" if cuda else "float32",
        warmup=50 if cuda else 3,
        runs=1000 if cuda else 20,
        profile_runs=200 if cuda else 10,
        layer_energy="isolated",
        layer_energy_counter="auto" if cuda else "simulated",
        layer_energy_max_seconds=600.0 if cuda else 20.0,
    )
    be = Backend(cfg)
    runner.run(cfg, Progress(None), backend=be)
    doc = json.loads((cfg.model_dir / isolate.FILE).read_text(encoding="utf-8"))
    return doc, be.counter


def _ci(row: dict[str, Any]) -> str:
    ci = row["energy_ci_uj"]
    return "          n/a" if ci is None else f"[{ci[0]:10.2f}, {ci[1]:10.2f}]"


def show(doc: dict[str, Any], counter: Any) -> None:
    sim = doc["simulated"]
    print(
        f"\n== {doc['label']}: {doc['model']} {doc['dtype']} on {doc['device_name']} "
        f"(counter {doc['counter']['name']}, update period "
        f"{doc['counter']['update_period_s'] * 1e3:.1f} ms, read "
        f"{doc['counter']['read_cost_us']:.0f} us{'; SIMULATED, not a measurement' if sim else ''})"
    )
    print(f"   window rule: {doc['window_rule']}")
    head = f"   {'layer':<34} {'uJ/exec':>10} {'95% interval':>25} {'us/exec':>9} reps graph"
    print(head + ("   true uJ" if sim else ""))
    for r in doc["layers"]:
        line = (
            f"   {r['layer']:<34} {r['energy_uj']:10.2f} {_ci(r)} {r['exec_time_us']:9.2f} "
            f"{r['repetitions']:4d} {'yes' if r['graph_used'] else 'no ':>5}"
        )
        if sim and counter is not None and r["layer"] in counter.truth:
            line += f" {counter.truth_uj(r['layer']):9.2f}"
        print(line)
    c, p = doc["check"], doc["pass"]
    whole = doc["whole"]
    print(
        f"   whole model per inference: {whole['energy_uj']:.1f} uJ {_ci(whole)}; sum of layers "
        f"{c['sum_layers_uj']:.1f} uJ; ratio sum/whole = {c['ratio']:.3f}"
    )
    graphs = sum(r["graph_used"] for r in doc["layers"])
    print(
        f"   pass: {p['duration_s']:.1f} s, {p['rounds']} rounds, {p['blocks']} blocks, "
        f"graphs for {graphs}/{len(doc['layers'])} layers; truncated={p['truncated']} "
        f"{p['reason'] or ''}"
    )


def agreement(a: dict[str, Any], b: dict[str, Any]) -> None:
    rows_b = {r["layer"]: r for r in b["layers"]}
    rel, overlap, n = [], 0, 0
    for r in a["layers"]:
        s = rows_b.get(r["layer"])
        if s is None:
            continue
        n += 1
        m = (r["energy_uj"] + s["energy_uj"]) / 2
        if m > 0:
            rel.append(abs(r["energy_uj"] - s["energy_uj"]) / m)
        ca, cb = r["energy_ci_uj"], s["energy_ci_uj"]
        if ca and cb and ca[0] <= cb[1] and cb[0] <= ca[1]:
            overlap += 1
    rel.sort()
    med = rel[len(rel) // 2] if rel else math.nan
    p90 = rel[int(0.9 * (len(rel) - 1))] if rel else math.nan
    ra, rb = a["check"]["ratio"], b["check"]["ratio"]
    print(
        f"\n== run-to-run ({a['label']} vs {b['label']}): per-layer |difference| / mean: median "
        f"{100 * med:.1f} %, 90th percentile {100 * p90:.1f} %; intervals overlap for "
        f"{overlap}/{n} layers; whole model {a['whole']['energy_uj']:.1f} vs "
        f"{b['whole']['energy_uj']:.1f} uJ; ratio {ra:.3f} vs {rb:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/jetpower-isolated"))
    ap.add_argument("--models", default=None, help="comma-separated; default per device")
    ap.add_argument("--repeat", default=None, help="the model run twice; default the first")
    ap.add_argument("--periods", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    models = (args.models or ("resnet18,mobilenet_v2" if cuda else "tinycnn,lenet")).split(",")
    repeat = args.repeat or models[0]
    Backend.periods, Backend.repetitions = args.periods, args.repetitions
    args.out.mkdir(parents=True, exist_ok=True)
    if not cuda:
        print("# no CUDA here: CPU models against the SIMULATED counter (not measurements)")
    t0 = time.monotonic()
    docs = {}
    for m in [*models, repeat]:
        label = m if m not in docs else f"{m}-repeat"
        t = time.monotonic()
        docs[label], counter = run_model(m, args.out, label, cuda)
        show(docs[label], counter)
        print(f"   worker total {time.monotonic() - t:.1f} s")
    agreement(docs[repeat], docs[f"{repeat}-repeat"])
    print(f"\n# total {time.monotonic() - t0:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
