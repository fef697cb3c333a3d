"""The torch backend on CUDA against a plain torch.cuda.Event loop (needs an NVIDIA GPU).

Runs the real worker process (``python -m jetpower.worker``) on a torchvision model at float16,
then times the same model with a bare CUDA-event loop in this process, before and after, and prints:

* the worker's timing-pass average latency, and the event loop's (profiling must not leak into the
  timing pass: the two should agree within 2 %);
* the per-layer latency sum of the profiling pass against its end-to-end latency.

Usage: python benchmarks/gpu_torch_timing.py [--model resnet18] [--runs 2000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from jetpower.worker.config import WorkerConfig
from jetpower.worker.models import build as build_model


def event_loop(model_name: str, shape: tuple[int, ...], runs: int, warmup: int) -> float:
    """Mean latency (s) of ``runs`` inferences, each bracketed by CUDA events and synchronised."""
    model = build_model(model_name).eval().to("cuda", torch.float16)
    x = torch.randn(*shape, device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    times = []
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(warmup):
            model(x)
        stream.synchronize()
        for _ in range(runs):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record(stream)
            model(x)
            b.record(stream)
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
    return statistics.fmean(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--profile-runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    shape = (1, 3, 224, 224)
    out = args.out or Path(tempfile.mkdtemp(prefix="jetpower-gpu-"))
    before = event_loop(args.model, shape, args.runs, args.warmup)
    cfg = WorkerConfig(model=args.model, result_dir=str(out), backend="torch", device="cuda",
                       dtype="float16", input_shape=shape, warmup=args.warmup, runs=args.runs,
                       profile_runs=args.profile_runs)
    cfg_path = out / "worker_config.json"
    out.mkdir(parents=True, exist_ok=True)
    cfg.write(cfg_path)
    subprocess.run([sys.executable, "-m", "jetpower.worker", "--config", str(cfg_path)],
                   check=True)
    after = event_loop(args.model, shape, args.runs, args.warmup)
    mdir = cfg.model_dir
    summary = json.loads((mdir / f"{mdir.name}_tensorrt.json").read_text())
    meta = json.loads((mdir / "jetpower_worker.json").read_text())
    layers = json.loads((mdir / "trt_profiling" / "trt_layer_latency.json").read_text())
    n = len(next(iter(layers.values())))
    per_run_sum_ms = [sum(v[i][0] for v in layers.values()) for i in range(n)]
    prof = meta["phases"]["profiling"]
    prof_e2e_ms = (prof["end_ns"] - prof["start_ns"]) / 1e6 / n
    events = statistics.fmean([before, after])
    res = {
        "model": args.model,
        "device": meta.get("device_name"),
        "timing_pass_avg_latency_ms": summary["avg_latency"] * 1e3,
        "event_loop_avg_latency_ms": events * 1e3,
        "event_loop_before_after_ms": [before * 1e3, after * 1e3],
        "timing_vs_events": summary["avg_latency"] / events - 1,
        "layers": len(layers),
        "profiled_runs": n,
        "layer_sum_mean_ms": statistics.fmean(per_run_sum_ms),
        "profiling_pass_per_run_ms": prof_e2e_ms,
        "alignment": meta.get("alignment"),
        "throughput_per_s": summary["avg_throughput"],
    }
    print(f"{args.model} float16 on {res['device']}")
    print(f"  timing pass (worker)   {res['timing_pass_avg_latency_ms']:.4f} ms")
    print(f"  plain CUDA-event loop  {res['event_loop_avg_latency_ms']:.4f} ms "
          f"(before {before * 1e3:.4f}, after {after * 1e3:.4f})")
    print(f"  difference             {100 * res['timing_vs_events']:+.2f} %")
    print(f"  per-layer sum          {res['layer_sum_mean_ms']:.4f} ms over {len(layers)} layers; "
          f"profiled run end to end {prof_e2e_ms:.4f} ms")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
