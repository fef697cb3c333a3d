"""Run one benchmark worker as a child process and follow its progress pipe.

The worker reports JSON lines on a pipe (never stdout); each is re-emitted through structlog
with the model bound.  The worker is ready when it says ``worker_ready``; it fails the model when
it is not ready in time, runs past its timeout, exits non-zero, or is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetpower._process import child
from jetpower.log import get_logger

log = get_logger()

#: re-emit a worker's progress at most this often per phase (the last step always)
PROGRESS_EVERY_S = 5.0


@dataclass
class WorkerOutcome:
    ok: bool
    reason: str | None = None
    exit_code: int | None = None
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    error_type: str | None = None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with status {code}"


class _Follower:
    def __init__(self) -> None:
        self.ready = False
        self.outcome = WorkerOutcome(ok=False)
        self._last: dict[str, float] = {}
        self.garbage = 0

    def handle(self, line: bytes, now: float) -> None:
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or "event" not in ev:
            self.garbage += 1
            if self.garbage <= 5:
                log.warning("worker_garbage", line=line[:200].decode(errors="replace"))
            return
        kind = ev.pop("event")
        if kind == "worker_ready":
            self.ready = True
            log.info("worker_ready", **ev)
        elif kind == "phase_started":
            log.info("worker_phase_started", **ev)
        elif kind == "phase_finished":
            phase = str(ev.get("phase"))
            self.outcome.phases[phase] = {"start_ns": int(ev.get("start_ns") or 0),
                                          "end_ns": int(ev.get("end_ns") or 0)}
            log.info("worker_phase_finished", **ev)
        elif kind == "progress":
            phase = str(ev.get("phase"))
            last = self._last.get(phase, 0.0)
            if ev.get("done") == ev.get("total") or now - last >= PROGRESS_EVERY_S:
                self._last[phase] = now
                log.info("model_progress", **ev)
        elif kind == "worker_finished":
            self.outcome.files = list(ev.get("files") or [])
        elif kind == "worker_failed":
            self.outcome.error_type = ev.get("error_type")
            self.outcome.reason = str(ev.get("message"))
        else:
            log.info(f"worker_{kind}", **ev)


async def run_worker(config_path: Path, *, timeout: float, ready_timeout: float,
                     grace: float = 10.0) -> WorkerOutcome:
    """Run ``python -m jetpower.worker --config CONFIG`` to its end; its failure never raises."""
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe()
    os.set_inheritable(wfd, True)
    follower = _Follower()
    argv = [sys.executable, "-m", "jetpower.worker", "--config", str(config_path),
            "--progress-fd", str(wfd)]
    reader = asyncio.StreamReader(limit=1 << 20)
    transport = None
    consumer: asyncio.Future[None] | None = None
    try:
        async with child(argv, name="worker", pass_fds=(wfd,), grace=grace) as proc:
            os.close(wfd)
            wfd = -1
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb", 0)
            )
            rfd = -1

            async def consume() -> None:
                while line := await reader.readline():
                    follower.handle(line, loop.time())

            consumer = asyncio.ensure_future(consume())
            waiter = asyncio.ensure_future(proc.wait())
            start = loop.time()
            try:
                while not waiter.done():
                    limit = (start + timeout) if follower.ready else (start + ready_timeout)
                    if loop.time() >= limit:
                        what = (f"ran past its timeout of {timeout:g} s" if follower.ready else
                                f"was not ready within {ready_timeout:g} s (ready timeout)")
                        follower.outcome.reason = f"worker {what}; stopped"
                        follower.outcome.error_type = "timeout"
                        limit_s = timeout if follower.ready else ready_timeout
                        log.error("worker_timeout", timeout_s=limit_s, ready=follower.ready)
                        break
                    await asyncio.wait({waiter}, timeout=min(1.0, limit - loop.time()))
            finally:
                waiter.cancel()
            # leaving the block terminates a worker that is still running (SIGTERM, grace, SIGKILL)
        code = proc.returncode
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(consumer, 5.0)  # the lines it wrote before it exited
        consumer.cancel()
    finally:
        if consumer is not None:  # cancelled mid-run: do not leave the reader task pending
            consumer.cancel()
        if transport is not None:
            transport.close()
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
    out = follower.outcome
    out.exit_code = code
    if follower.outcome.error_type == "timeout":
        out.ok = False
    elif code == 0:
        out.ok = True
        out.reason = None
    else:
        detail = f": {out.reason}" if out.reason else ""
        out.reason = f"worker {_describe_exit(code if code is not None else -9)}{detail}"
    return out


def failure_file_reason(model_dir: Path) -> dict[str, Any] | None:
    """The machine-readable reason a worker wrote, if any."""
    p = model_dir / "jetpower_failure.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
