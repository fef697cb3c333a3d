"""Progress lines and phase markers on the pipe the supervisor gives the worker.

One JSON object per line; every line has ``event`` and ``t_ns`` (CLOCK_MONOTONIC ns).  Phase
windows are remembered here as well, because they go into ``jetpower_worker.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from jetpower.timebase import monotonic_ns

#: at most this many ``progress`` lines per second and phase
PROGRESS_HZ = 4.0


class Progress:
    """Writes progress events to a file descriptor (or drops them when there is none)."""

    def __init__(self, fd: int | None) -> None:
        self._fh: IO[str] | None = None
        if fd is not None:
            self._fh = os.fdopen(fd, "w", buffering=1, encoding="utf-8", closefd=False)
        self.phases: dict[str, dict[str, int]] = {}
        self.current_phase: str | None = None
        self._last_progress_ns = 0
        self._min_gap_ns = int(1e9 / PROGRESS_HZ)

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event line. A closed pipe (supervisor gone) does not stop the worker."""
        if self._fh is None:
            return
        line = json.dumps({"event": event, "t_ns": monotonic_ns(), **fields}, default=str)
        try:
            self._fh.write(line + "\n")
        except (BrokenPipeError, OSError, ValueError):
            self._fh = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark a phase: ``phase_started``/``phase_finished``, stamped as the recorded window."""
        start = monotonic_ns()
        self.current_phase = name
        self.phases[name] = {"start_ns": start}
        self.emit("phase_started", phase=name, start_ns=start)
        self._last_progress_ns = 0
        yield
        end = monotonic_ns()
        self.phases[name]["end_ns"] = end
        self.emit("phase_finished", phase=name, start_ns=start, end_ns=end)
        self.current_phase = None

    def progress(self, done: int, total: int) -> None:
        """Report ``done`` of ``total``, rate-limited; the last step is always reported."""
        now = monotonic_ns()
        if done != total and now - self._last_progress_ns < self._min_gap_ns:
            return
        self._last_progress_ns = now
        self.emit("progress", phase=self.current_phase, done=done, total=total)

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.flush()
            self._fh = None
