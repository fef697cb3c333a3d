"""Does the sampler disturb what it measures?  Timing-pass throughput with the sampler at 1 kHz
against the sampler off, alternating, several repetitions, in one call.

"on": ``python -m jetpower sample --source SOURCE --rate 1000 -- <timing loop>`` (the sampler
process pinned to the last CPU, the supervisor-like parent draining the ring into CSV, exactly as in
a campaign); "off": the timing loop alone.  Prints each repetition, the medians and their ratio.

Usage: python benchmarks/gpu/interference.py [--source nvml] [--reps 5] [--runs 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def loop_cmd(args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(HERE / "timing_loop.py"), "--model", args.model,
            "--runs", str(args.runs), "--batch", str(args.batch)]


def run(mode: str, args: argparse.Namespace, tmp: Path, rep: int) -> float:
    cmd = loop_cmd(args)
    if mode != "off":
        out = tmp / f"sample-{mode}-{rep}"
        src = ["--simulate"] if mode == "simulated" else ["--source", args.source]
        cmd = [sys.executable, "-m", "jetpower", "sample", *src, "--rate",
               str(args.rate), "--out", str(out), "--json", "--", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    return float(next(d["throughput"] for d in lines if "throughput" in d))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="nvml")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--reps", type=int, default=6)
    # batch 1 of an eager model is bound by the CPU launching kernels, whose speed varies by
    # ~10 % from run to run here; a batch that keeps the GPU busy measures what the sampler
    # could disturb with ~0.2 % noise
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--also-simulated", action="store_true",
                    help="a third mode: the sampler on the simulated source, to tell the cost of "
                         "the sampler process itself from that of the sensor's calls")
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    modes = ["off", "on", *(["simulated"] if args.also_simulated else [])]
    got: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = modes if rep % 2 == 0 else modes[::-1]
            for mode in order:
                got[mode].append(run(mode, args, Path(tmp), rep))
            print(f"rep {rep}: " + "  ".join(f"{m} {got[m][-1]:.1f}/s" for m in modes),
                  flush=True)
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in got.items()}
    print("spread (max-min)/median: "
          + ", ".join(f"{m} {100 * v:.2f} %" for m, v in spread.items()))
    if "simulated" in got:
        sim = statistics.median(got["simulated"])
        print(f"sampler on the simulated source (no {args.source} calls): "
              f"{100 * (sim / statistics.median(got['off']) - 1):+.2f} %")
    off, on = statistics.median(got["off"]), statistics.median(got["on"])
    res = {"model": args.model, "batch": args.batch, "source": args.source,
           "rate_hz": args.rate, "reps": args.reps,
           "runs": got, "median_off": off, "median_on": on,
           "on_vs_off": on / off - 1}
    print(f"median throughput: off {off:.1f}/s, sampler on {on:.1f}/s: "
          f"{100 * (on / off - 1):+.2f} %")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
