"""Structured logging: structlog configured once, by the CLI.

JSON lines on the log stream when it is not a terminal (byte for byte the events, nothing added);
on a terminal a console renderer with human units (W, ms, s instead of µW and ns). Optionally a
copy of every event as JSON lines in a file (the run directory's ``run.log.jsonl``). Modules call
:func:`get_logger`; per-task context is bound with
``structlog.contextvars.bound_contextvars(model=..., phase=...)``.

A live display (``campaign/progress.py``) hooks in with :func:`add_listener` (it sees every event
dict) and :func:`redirect_console` (console lines are printed above it instead of through it).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

_file_lock = threading.Lock()
Listener = Callable[[dict[str, Any]], None]


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


class _Listeners:
    """A processor that shows every event to the registered listeners (a copy; never alters it)."""

    def __init__(self) -> None:
        self.funcs: list[Listener] = []

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        for f in list(self.funcs):
            f(dict(event_dict))
        return event_dict


class _Out:
    """The file the rendered lines go to; a live display can take them over for a while."""

    def __init__(self) -> None:
        #: None: whatever ``sys.stdout`` is when a line is written (tests and tools replace it)
        self.stream: TextIO | None = None
        self.divert: Callable[[str], None] | None = None
        self._pending = ""  # print() writes the line and its newline separately

    def write(self, text: str) -> int:
        divert = self.divert
        if divert is None:
            (self.stream or sys.stdout).write(text)
            return len(text)
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            divert(line)
        return len(text)

    def flush(self) -> None:
        if self.divert is None:
            (self.stream or sys.stdout).flush()


_tee = _Tee()
_listeners = _Listeners()
_out = _Out()
_state: dict[str, Any] = {"json": True, "stream": sys.stdout}

#: field suffix -> (divisor, unit) of the human console view
_HUMAN_UNITS = {"_uw": (1e6, "W"), "_uj": (1e6, "J"), "_ns": (1e9, "s")}
# stamps (start_ns, t_ns...) are points on the monotonic clock, not durations: kept as they are
_STAMPS = ("start_ns", "end_ns", "t_ns", "last_sample_ns", "sample_ns")


def humanise(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Console-only: ``avg_power_uw=7387359.88`` -> ``avg_power=7.387 W`` and the like."""
    out: EventDict = {}
    for key, value in event_dict.items():
        out_key, out_value = key, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for suffix, (div, unit) in _HUMAN_UNITS.items():
                if key.endswith(suffix) and not key.endswith(_STAMPS):
                    out_key, out_value = key[: -len(suffix)], f"{value / div:.4g} {unit}"
                    break
            else:
                if key.endswith("_s") and isinstance(value, float):
                    out_key, out_value = key[:-2], f"{value:.4g} s"
                elif key.endswith("_hz") and isinstance(value, float):
                    out_key, out_value = key[:-3], f"{value:.6g} Hz"
        out[out_key] = out_value
    return out


def configure_logging(*, json_lines: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog for the process. Called once, from the CLI.

    ``json_lines=None`` picks JSON unless ``stream`` (default stdout) is a TTY.
    """
    _out.stream = stream  # None: stdout as it is at each write
    stream = stream or sys.stdout
    if json_lines is None:
        json_lines = not _isatty(stream)
    _state.update(json=json_lines, stream=stream)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.dict_tracebacks,
        _tee,
        _listeners,
    ]
    renderer: list[Any] = (
        [structlog.processors.JSONRenderer(default=str)]
        if json_lines
        else [humanise, structlog.dev.ConsoleRenderer(colors=_isatty(stream))]
    )
    structlog.configure(
        processors=[*shared, *renderer],
        logger_factory=structlog.PrintLoggerFactory(_out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def is_console() -> bool:
    """True when the log is rendered for a person (a terminal, or ``--console``)."""
    return not _state["json"]


def log_stream() -> TextIO:
    """The stream the log goes to (stdout or stderr, as the CLI chose)."""
    stream: TextIO = _state["stream"]
    return stream


def add_listener(func: Listener) -> Callable[[], None]:
    """Call ``func(event_dict)`` for every event; returns the function that removes it."""
    _listeners.funcs.append(func)

    def remove() -> None:
        if func in _listeners.funcs:
            _listeners.funcs.remove(func)

    return remove


def redirect_console(divert: Callable[[str], None] | None) -> None:
    """Hand rendered lines to ``divert`` (one line, no newline) instead of the stream; None ends."""
    _out.divert = divert


def log_to_file(path: Path | None) -> None:
    """Also write every event, as JSON lines, to ``path`` (appending); ``None`` stops it."""
    with _file_lock:
        if _tee.fh is not None:
            _tee.fh.close()
        _tee.fh = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)
