"""``jetpower compare RUN_A RUN_B [RUN_C ...]``: every run against the first, per model and layer.

Energy per inference, latency, throughput and net power; the difference with its 95 % interval
and whether it is significant (see :mod:`jetpower.report.compare`). A table on the terminal
(models; ``--layers`` adds every layer), and ``--markdown FILE`` / ``--csv FILE`` (models and
layers). Differing settings (backend, dtype, rate, board, clocks, ...) are warnings naming them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jetpower.errors import UsageError

#: stdout carries the comparison; the log goes to stderr
LOG_STREAM = "stderr"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path, metavar="RESULT_DIR",
                   help="result directories; the first is the reference")
    p.add_argument("--layers", action="store_true", help="show every layer on the terminal")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the comparison as markdown")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write the comparison as CSV")


def _check_out(path: Path | None, flag: str) -> None:
    if path is None:
        return
    parent = path.absolute().parent
    if path.is_dir() or not parent.is_dir():
        raise UsageError(f"{flag} {str(path)!r}: expected a file in an existing directory")
    for pseudo in ("/proc", "/sys", "/dev"):
        if str(parent.resolve()).startswith(pseudo + "/") or str(parent.resolve()) == pseudo:
            raise UsageError(f"{flag} {str(path)!r} is under {pseudo}, which is not storage")


def run(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise UsageError("give at least two result directories: RUN_A RUN_B [...]")
    for r in args.runs:
        if not r.is_dir():
            raise UsageError(f"{str(r)!r}: not a result directory")
    _check_out(args.markdown, "--markdown")
    _check_out(args.csv, "--csv")
    from jetpower._fs import atomic_write_text
    from jetpower.report.compare import compare, print_comparison, to_csv, to_markdown

    result = compare(list(args.runs))
    print_comparison(result, layers=args.layers)
    if args.markdown is not None:
        atomic_write_text(args.markdown, to_markdown(result))
    if args.csv is not None:
        atomic_write_text(args.csv, to_csv(result))
    return 0
