"""The command line: ``python -m jetpower <command> ...``.

The only place that maps exceptions to exit statuses, and the one place that configures logging
(console lines on a terminal, JSON lines otherwise, for every command alike). Each subcommand lives
in ``jetpower.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``, imported
only when that command runs (so ``probe`` never pays for matplotlib, nor ``report`` for the
sampler). A command whose stdout carries its result (``probe``, ``sample``) sets
``LOG_STREAM = "stderr"``; a command may offer ``--console`` (human lines even when piped).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import signal
import sys
from collections.abc import Sequence

from jetpower import __version__
from jetpower.errors import JetpowerError, storage_error
from jetpower.log import configure_logging

COMMANDS: dict[str, str] = {
    "run": "run a measurement campaign from a plan file",
    "validate": "check a plan file (and this machine) and print what it would do",
    "doctor": "what this machine will do to a measurement, with advice",
    "init": "write a commented plan for this board",
    "probe": "list the power rails found and characterise them",
    "sample": "sample power for a time or while a command runs",
    "report": "per-model and per-layer energy report of a result directory",
    "compare": "compare result directories: per model and layer, with significance",
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


def _did_you_mean(word: str) -> str | None:
    """The error for an unknown command word, with the closest commands; None when it is known."""
    if word in COMMANDS or word.startswith("-"):
        return None
    close = difflib.get_close_matches(word, list(COMMANDS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"jetpower: error: unknown command {word!r}{hint} (commands: {', '.join(COMMANDS)})"


def _configure_logging(args: argparse.Namespace) -> None:
    module = _module(args.command)
    stream = sys.stderr if getattr(module, "LOG_STREAM", "stdout") == "stderr" else sys.stdout
    configure_logging(json_lines=False if getattr(args, "console", False) else None,
                      stream=stream)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (unknown := _did_you_mean(argv[0])):
        print(unknown, file=sys.stderr)
        return 2
    # Build only the parser of the command asked for: importing every command costs time.
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    try:
        _configure_logging(args)
        return int(_module(args.command).run(args))  # type: ignore[attr-defined]
    except JetpowerError as e:
        print(f"jetpower {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a full or read-only disk that no layer below translated
        if (err := storage_error(e)) is None:
            raise
        print(f"jetpower {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"jetpower {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
