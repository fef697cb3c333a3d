"""One owner per child process.

:func:`child` spawns a process, streams its stderr into the log line by line, and on every exit
path (normal, error, cancellation) sends SIGTERM, waits a grace period, sends SIGKILL, and reaps.
Children also ask the kernel to SIGTERM them if the supervisor dies (:func:`die_with_parent`), so
not even a SIGKILLed supervisor leaves orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from jetpower.log import get_logger

log = get_logger()

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child: have the kernel send ``sig`` when the parent exits (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() == 1:  # the parent was already gone before prctl took effect
            os.kill(os.getpid(), sig)


async def _pump_stderr(stream: asyncio.StreamReader, name: str) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        text = line.decode(errors="replace").rstrip()
        if text:
            log.info("child_stderr", child=name, line=text[:2000])


async def terminate(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM, wait ``grace`` seconds, SIGKILL, reap. Returns the exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


@contextlib.asynccontextmanager
async def child(
    argv: Sequence[str],
    *,
    name: str,
    grace: float = 5.0,
    stdout: int | None = asyncio.subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` as a child owned by this context; it never outlives the block."""
    kwargs: dict[str, Any] = {}
    if pass_fds:
        kwargs["pass_fds"] = tuple(pass_fds)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        # Own process group: a Ctrl-C at the terminal reaches the supervisor only, which then
        # stops the children in order instead of all of them dying at once.
        start_new_session=True,
        **kwargs,
    )
    assert proc.stderr is not None
    pump = asyncio.ensure_future(_pump_stderr(proc.stderr, name))
    try:
        yield proc
    finally:
        # Shielded: cleanup must finish even when the surrounding task is being cancelled.
        await asyncio.shield(_close(proc, pump, grace))


async def _close(
    proc: asyncio.subprocess.Process, pump: asyncio.Future[None], grace: float
) -> None:
    await terminate(proc, grace)
    try:
        await asyncio.wait_for(pump, 2.0)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pump.cancel()
