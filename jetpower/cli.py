"""The command line: ``python -m jetpower <command> ...``.

The only place that maps exceptions to exit statuses. Each subcommand lives in
``jetpower.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``, imported only
when that command runs (so ``probe`` never pays for matplotlib, nor ``report`` for the sampler).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from jetpower import __version__
from jetpower.errors import JetpowerError

COMMANDS: dict[str, str] = {
    "run": "run a measurement campaign from a plan file",
    "validate": "check a plan file and print what it would do",
    "init": "write a commented plan for this board",
    "probe": "list the power rails found and characterise them",
    "sample": "sample power for a time or while a command runs",
    "report": "per-model and per-layer energy report of a result directory",
    "upload": "upload a result directory to DagsHub (DVC versioned)",
    "download": "download a result directory from DagsHub",
}


def _module(name: str) -> object:
    return importlib.import_module(f"jetpower.commands.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetpower",
        description="Power and per-layer runtime of neural-network inference on NVIDIA Jetson.",
    )
    parser.add_argument("--version", action="version", version=f"jetpower {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == only:  # the others' modules (and their dependencies) are never imported
            _module(name).add_arguments(p)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Build only the parser of the command asked for: importing every command costs time.
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    try:
        return int(_module(args.command).run(args))  # type: ignore[attr-defined]
    except JetpowerError as e:
        print(f"jetpower {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"jetpower {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
