"""``jetpower probe``: list the rails found and characterise them."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path
from typing import Any

from jetpower.acquire.recorder import sensor_source
from jetpower.errors import UsageError
from jetpower.sensors import SOURCES

#: stdout carries the result; the log goes to stderr (console on a terminal, else JSON lines)
LOG_STREAM = "stderr"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--root", type=Path, default=Path("/"), help="filesystem root holding sys/")
    src.add_argument("--simulate", action="store_true", help="probe the simulated sensor")
    p.add_argument("--source", default="auto", choices=[s for s in SOURCES if s != "simulated"],
                   help="which kind of sensor (default: the first found, in the order listed)")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="how long to free-run the sampler to find change periods (default 1)")
    p.add_argument("--rate-hz", type=float, default=1000.0,
                   help="the sampling rate a campaign would use, for the per-layer estimate "
                   "(default 1000, the plan's default)")
    p.add_argument("--runs", type=int, default=30000,
                   help="profiled runs a campaign would make, for the per-layer estimate "
                   "(default 30000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


async def _probe(args: argparse.Namespace) -> dict[str, Any]:
    from jetpower.acquire.probe import probe

    source = "simulated" if args.simulate else args.source
    async with sensor_source(root=args.root, source=source) as sensor:
        return await probe(sensor, seconds=args.seconds, rate_hz=args.rate_hz, runs=args.runs)


def _human(r: dict[str, Any]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = [
        "SIMULATED sensor: these numbers are not measurements" if r["simulated"] else None,
        f"source {r['source']}  board {r['board'] or 'unknown'}  JetPack {r['jetpack'] or '-'} "
        f"(L4T {r['l4t'] or '-'})  kernel {r['kernel']}",
        (f"update_interval {r['update_interval']}  samples {r['samples']}"
         if any(v is not None for v in r["update_interval"].values()) else None),
        "",
        f"{'rail':<20} {'power from':<10} {'read us p50':>11} {'p99':>7} "
        f"{'changes every':>14}  files",
    ]
    rows = []
    for rail in r["rails"]:
        files = ", ".join(f"{q}={p} ({rail['units'][q]})" for q, p in rail["files"].items())
        rows.append(
            f"{rail['label']:<20} {rail['derivation']:<10} {rail['read_us_median']:>11.1f} "
            f"{rail['read_us_p99']:>7.1f} {num(rail['change_period_ms'], '>11.2f')} ms  {files}"
        )
    total = r["total"]
    what = total.get("rail") or " + ".join(total["sum"])
    tail = ["", f"total: {what}", f"  because {r['total_reason']}"]
    if r.get("per_layer"):
        from jetpower.acquire.allowance import summary_lines

        tail += ["", *summary_lines(r["per_layer"])]
    return "\n".join(x for x in [*head, *rows, *tail] if x is not None)


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= 60):
        raise UsageError(f"--seconds {args.seconds:g}: expected more than 0 and at most 60")
    if not (math.isfinite(args.rate_hz) and 0 < args.rate_hz <= 100_000):
        raise UsageError(f"--rate-hz {args.rate_hz:g}: expected more than 0 and at most 100000")
    if not 1 <= args.runs <= 10_000_000:
        raise UsageError(f"--runs {args.runs}: expected 1 to 10000000")
    if not args.simulate and not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    result = asyncio.run(_probe(args))
    print(json.dumps(result, indent=2) if args.json else _human(result))
    return 0
