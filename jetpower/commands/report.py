"""``jetpower report RESULT_DIR [--out DIR]``: per-model and per-layer energy report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jetpower.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result_dir", type=Path, metavar="RESULT_DIR", help="a run's result dir")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="output directory (default RESULT_DIR/report); must be missing, empty, or a "
        "previous report, which is refreshed",
    )  # fmt: skip
    parser.add_argument(
        "--min-layer-samples", type=int, default=30, metavar="N",
        help="fewest power samples in a layer's windows for an energy estimate (default 30)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=30, metavar="N",
                        help="layers shown per model plot (default 30)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.min_layer_samples < 2:
        raise UsageError(f"--min-layer-samples {args.min_layer_samples}: want 2 or more")
    if args.top < 1:
        raise UsageError(f"--top {args.top}: want 1 or more")
    # imported here: numpy and matplotlib load only when this command runs
    from jetpower.log import get_logger
    from jetpower.report import build_report

    res = build_report(args.result_dir, args.out, min_layer_samples=args.min_layer_samples,
                       top_n=args.top)  # fmt: skip
    get_logger().info(
        "report_written", out=str(res.out), models=len(res.report.models),
        simulated=res.report.data.simulated, seconds=round(res.seconds["total"], 3),
    )  # fmt: skip
    if sys.stdout.isatty():  # a person: the summary table; a pipe gets the JSON lines only
        from jetpower.report.numbers import report_numbers
        from jetpower.report.summary import print_summary

        print_summary(report_numbers(res.report), res.out)
    return 0
