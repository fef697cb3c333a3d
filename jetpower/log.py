"""Structured logging: structlog configured once, by the CLI.

JSON lines on stdout (a console renderer when stdout is a TTY), and optionally a copy of every event
as JSON lines in a file (the run directory's ``run.log.jsonl``).  Modules call :func:`get_logger`;
per-task context is bound with ``structlog.contextvars.bound_contextvars(model=..., phase=...)``.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import IO, Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

_file_lock = threading.Lock()


class _Tee:
    """A structlog processor that writes every event as one JSON line to a file as well."""

    def __init__(self) -> None:
        self.fh: IO[str] | None = None

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        fh = self.fh
        if fh is not None:
            line = json.dumps(event_dict, default=str, separators=(",", ":"))
            with _file_lock:
                fh.write(line + "\n")
                fh.flush()
        return event_dict


_tee = _Tee()


def configure_logging(*, json_lines: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog for the process. Call once, from the CLI.

    ``json_lines=None`` picks JSON unless the stream is a TTY.
    """
    stream = stream or sys.stdout
    if json_lines is None:
        json_lines = not stream.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.dict_tracebacks,
        _tee,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def log_to_file(path: Path | None) -> None:
    """Also write every event, as JSON lines, to ``path`` (appending); ``None`` stops it."""
    with _file_lock:
        if _tee.fh is not None:
            _tee.fh.close()
        _tee.fh = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)
