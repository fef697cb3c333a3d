"""A timing pass on its own: warm-up, then N synchronised inferences; prints throughput as JSON.

Used by ``interference.py`` as the workload that runs with and without the sampler.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from jetpower.worker.models import build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    model = build(args.model).eval().to("cuda", torch.float16)
    x = torch.randn(args.batch, 3, 224, 224, device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(args.warmup):
            model(x)
        stream.synchronize()
        t0 = time.monotonic()
        for _ in range(args.runs):
            model(x)
            stream.synchronize()
        dt = time.monotonic() - t0
    print(json.dumps({"runs": args.runs, "batch": args.batch, "seconds": dt,
                      "throughput": args.runs * args.batch / dt}))


if __name__ == "__main__":
    main()
