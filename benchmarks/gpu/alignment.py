"""How far layer windows sit from the real execution on CLOCK_MONOTONIC (issue 13, item 3).

Usage: python benchmarks/gpu/alignment.py [--model resnet18] [--runs 3000] [--dtype float16]
                                          [--device auto] [--json out.json]

CUDA.  Per inference: the stream is idle; an anchor event E0 is recorded between two host stamps
h0 and h1 (``jetpower/worker/alignment.py``: the device passed E0 within [h0, h1]); then the
host stamp ``s`` just before the forward call (the old reconstruction's start); forward pre/post
hooks record an event and a host stamp around every leaf module; after the synchronise, a second
anchor E_end, bracketed the same way.  From these:

- ``reconstructed_vs_measured``: |(s + latencies of the layers up to k) - (t(E0) + elapsed(E0,
  post_k))|, the old reconstruction's error against the device-placed window end, per layer and
  run;
- ``reconstructed_start_offset``: t(E0) + elapsed(E0, pre_0) - s, how late the first layer starts
  after the host's stamp, and ``reconstructed_corrected``: the error left once that per-model
  median offset is added (what correcting a constant offset alone would give);
- ``anchor_half_width``: the measured method's bound, (h1 - h0) / 2, per run;
- ``round_trip``: E_end placed through E0 minus the middle of E_end's own bracket, which must lie
  within the sum of the two half-widths (an independent check of the anchor and of the device
  clock's rate against CLOCK_MONOTONIC); ``causality_violations``: events placed before the host
  recorded them (by more than the anchor's half-width).

CPU (degraded, here): the same model on CPU: each leaf module's window stamped by its hooks (the
worker's method), against the old reconstruction, and the hook-dispatch calibration the worker
states as its error.  Every figure is in ns.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from jetpower.timebase import monotonic_ns
from jetpower.worker import alignment
from jetpower.worker.config import WorkerConfig
from jetpower.worker.profile import LayerProfile
from jetpower.worker.torch_backend import TorchBackend


def _backend(model: str, device: str, dtype: str) -> TorchBackend:
    cfg = WorkerConfig(
        model=model, result_dir="/tmp/jetpower-alignment", backend="torch", device=device,
        dtype=dtype, warmup=0, runs=1, profile_runs=1,
    )  # fmt: skip
    be = TorchBackend(cfg)
    be.load()
    be.compile()
    return be


def cuda_figures(be: TorchBackend, runs: int, warmup: int) -> dict[str, Any]:
    torch, stream = be.torch, be.stream
    leaves = [m for _, m in be._leaves]
    ev = torch.cuda.Event
    state: dict[str, Any] = {"pos": 0}
    calls: list[tuple[Any, Any, int, int]] = []  # per layer of the current run

    def pre(mod: Any, args: Any) -> None:
        e = ev(enable_timing=True)
        t = monotonic_ns()
        e.record(stream)
        state["pre"] = (e, t)

    def post(mod: Any, args: Any, out: Any) -> None:
        e = ev(enable_timing=True)
        e.record(stream)
        t = monotonic_ns()
        a, ta = state.pop("pre")
        calls.append((a, e, ta, t))

    handles = [m.register_forward_pre_hook(pre) for m in leaves]
    handles += [m.register_forward_hook(post) for m in leaves]
    recon, offset0, hw, trip, viol, per_run_off = [], [], [], [], 0, []
    recon_rel: list[np.ndarray] = []
    try:
        for r in range(warmup + runs):
            calls.clear()
            a0 = alignment.anchor_event(torch, stream)
            s = monotonic_ns()
            with torch.cuda.stream(stream):
                be.model(be.x)
            a1 = alignment.anchor_event(torch, stream)  # synchronises first
            if r < warmup:
                continue
            lat = np.array([a.elapsed_time(b) * 1e6 for a, b, _, _ in calls])
            starts = np.array([a0.place(a) for a, _, _, _ in calls])
            ends = np.array([a0.place(b) for _, b, _, _ in calls])
            host_pre = np.array([t for _, _, t, _ in calls], dtype=np.float64)
            rec_end = s + np.cumsum(lat)
            recon.append(rec_end - ends)
            off = starts[0] - s
            offset0.append(off)
            per_run_off.append(off)
            recon_rel.append(rec_end - ends)
            hw.append(a0.half_width_ns)
            placed_end = a0.place(a1.event)
            trip.append((placed_end - a1.mid_ns, a0.half_width_ns + a1.half_width_ns))
            viol += int(np.count_nonzero(starts < host_pre - a0.half_width_ns))
    finally:
        for h in handles:
            h.remove()
    err = np.concatenate(recon)
    med_off = float(np.median(offset0))
    corrected = np.concatenate([d + med_off for d in recon_rel])
    tr = np.array(trip)
    return {
        "device": "cuda",
        "device_name": torch.cuda.get_device_name(),
        "layers": len(calls),
        "runs": runs,
        "reconstructed_vs_measured": alignment.summary(err),
        "reconstructed_signed_median_ns": float(np.median(err)),
        "reconstructed_start_offset": {
            "median_ns": med_off,
            "p99_ns": float(np.percentile(offset0, 99)),
        },
        "reconstructed_corrected": alignment.summary(corrected),
        "anchor_half_width": alignment.summary(hw),
        "round_trip": {
            **alignment.summary(tr[:, 0]),
            "outside_bound": int(np.count_nonzero(np.abs(tr[:, 0]) > tr[:, 1])),
        },
        "causality_violations": viol,
    }


def cpu_figures(be: TorchBackend, runs: int, warmup: int) -> dict[str, Any]:
    names = be.prepare_profiling()
    prof = LayerProfile(names, runs + warmup)
    try:
        for r in range(runs + warmup):
            be.profile_run(prof, r)
    finally:
        be.end_profiling()
    ends = dict(prof.window_ends_ns())
    n = prof.done
    err = []
    cum = prof.start_ns[:n].astype(np.float64)
    for j in range(len(names)):
        cum = cum + prof.lat_ms[:n, j].astype(np.float64) * 1e6
        err.append((cum - ends[j])[warmup:])
    al = be.alignment()
    return {
        "device": "cpu",
        "layers": len(names),
        "runs": runs,
        "reconstructed_vs_measured": alignment.summary(np.concatenate(err)),
        "measured_error": {
            "expected_error_ns": al["expected_error_ns"],
            "max_error_ns": al["max_error_ns"],
        },
        "cpu_hook_calibration": al["cpu_hook_calibration"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: resnet18 on CUDA, lenet on CPU")
    ap.add_argument("--runs", type=int, default=None, help="default: 3000 on CUDA, 300 on CPU")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    model = args.model or ("resnet18" if cuda else "lenet")
    dtype = args.dtype or ("float16" if cuda else "float32")
    runs = args.runs or (3000 if cuda else 300)
    t0 = time.monotonic()
    be = _backend(model, "cuda" if cuda else "cpu", dtype)
    figs = cuda_figures(be, runs, args.warmup) if cuda else cpu_figures(be, runs, args.warmup)
    figs |= {"model": model, "dtype": dtype, "seconds": round(time.monotonic() - t0, 1)}
    if not cuda:
        figs["note"] = "CPU run: no GPU here; the CUDA figures need the GPU machine"
    text = json.dumps(figs, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    r = figs["reconstructed_vs_measured"]
    print(
        f"# {model} {dtype} on {figs['device']}: reconstructed windows off by median "
        f"{r['median_ns'] / 1e3:.1f} us, p99 {r['p99_ns'] / 1e3:.1f} us; measured method: "
        + (
            f"anchor half-width median {figs['anchor_half_width']['median_ns'] / 1e3:.2f} us, "
            f"p99 {figs['anchor_half_width']['p99_ns'] / 1e3:.2f} us; round trip median "
            f"{figs['round_trip']['median_ns'] / 1e3:.2f} us, "
            f"{figs['round_trip']['outside_bound']} outside bound; "
            f"{figs['causality_violations']} causality violations"
            if cuda
            else f"hook dispatch residual median {figs['measured_error']['expected_error_ns']:.0f}"
            f" ns, p99 {figs['measured_error']['max_error_ns']:.0f} ns"
        )
    )


if __name__ == "__main__":
    main()
