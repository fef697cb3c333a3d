"""One owner per child process.

:func:`child` spawns a process, streams its stderr into the log line by line, and on every exit
path (normal, error, cancellation) sends SIGTERM, waits a grace period, sends SIGKILL, and reaps.
Children also ask the kernel to SIGTERM them if the supervisor dies (:func:`die_with_parent`), so
not even a SIGKILLed supervisor leaves orphans behind.

Children get the environment without the upload secrets (:data:`SECRET_ENV`): the simulator, the
sampler and the worker (which runs a model's own code) never upload.  A command the user gave
(``jetpower sample -- CMD``) keeps the user's environment whole (``secrets=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from jetpower.log import get_logger

log = get_logger()

_PR_SET_PDEATHSIG = 1

#: environment variables that hold upload credentials (DagsHub); only the upload, in-process,
#: reads them
SECRET_ENV = ("DAGSHUB_USER_TOKEN", "DAGSHUB_PASSWORD")

#: stderr is read in chunks of this size; a line is logged up to LINE_CHARS characters
_CHUNK = 1 << 16
LINE_CHARS = 2000


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) without the upload secrets."""
    base = dict(os.environ if env is None else env)
    for name in SECRET_ENV:
        base.pop(name, None)
    return base


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child: have the kernel send ``sig`` when the parent exits (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() == 1:  # the parent was already gone before prctl took effect
            os.kill(os.getpid(), sig)


def _die_with(parent: int) -> None:
    """In a forked child before exec: SIGTERM when ``parent`` dies (or is already gone)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(128 + signal.SIGTERM)


async def _pump_stderr(stream: asyncio.StreamReader, name: str) -> None:
    """Log each line the child writes to stderr, however long (``readline`` would raise past
    its 64 KiB limit, as a progress bar that redraws with ``\\r`` reaches): a line is logged
    once, cut to :data:`LINE_CHARS`, with its full length when it was cut."""
    head = bytearray()  # the start of the current line, at most LINE_CHARS bytes
    length = 0  # its length so far
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            _log_line(name, head, length)
            return
        for k, part in enumerate(chunk.split(b"\n")):
            if k:  # a line ended before this part
                _log_line(name, head, length)
                head.clear()
                length = 0
            if len(head) < LINE_CHARS:
                head += part[: LINE_CHARS - len(head)]
            length += len(part)


def _log_line(name: str, head: bytearray, length: int) -> None:
    text = head.decode(errors="replace").rstrip()
    if not text:
        return
    if length > len(head):
        log.info("child_stderr", child=name, line=text, cut_from_bytes=length)
    else:
        log.info("child_stderr", child=name, line=text)


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
    secrets: bool = False,
    new_session: bool = True,
    stderr_pipe: bool = True,
    stdin: int | None = asyncio.subprocess.DEVNULL,
    die_with_us: bool = False,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` as a child owned by this context; it never outlives the block.

    ``env`` (default: ours) loses :data:`SECRET_ENV` unless ``secrets``.  ``new_session``: its
    own process group (a Ctrl-C at the terminal reaches us only).  ``stderr_pipe``: its stderr
    goes to the log; otherwise it shares ours (a user's command).  ``die_with_us``: the kernel
    SIGTERMs it when we die, for a program that does not ask for it itself (jetpower's own
    children call :func:`die_with_parent` first thing).
    """
    kwargs: dict[str, Any] = {}
    if pass_fds:
        kwargs["pass_fds"] = tuple(pass_fds)
    if die_with_us:
        kwargs["preexec_fn"] = functools.partial(_die_with, os.getpid())
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE if stderr_pipe else None,
        env=env if secrets else child_env(env),
        cwd=cwd,
        # Own process group: a Ctrl-C at the terminal reaches the supervisor only, which then
        # stops the children in order instead of all of them dying at once.
        start_new_session=new_session,
        **kwargs,
    )
    pump: asyncio.Future[None] | None = None
    if proc.stderr is not None:
        pump = asyncio.ensure_future(_pump_stderr(proc.stderr, name))
    try:
        yield proc
    finally:
        await close_fully(proc, pump, grace)


async def close_fully(proc: asyncio.subprocess.Process, pump: asyncio.Future[None] | None,
                      grace: float) -> None:
    """Stop and reap ``proc``, however often the caller is cancelled meanwhile.

    The closing runs in its own task; each cancellation of the caller is absorbed until that task
    is done (the child reaped), then re-raised once, so the caller still ends as cancelled.
    """
    closing = asyncio.ensure_future(_close(proc, pump, grace))
    cancelled = False
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    closing.result()


async def _close(
    proc: asyncio.subprocess.Process, pump: asyncio.Future[None] | None, grace: float
) -> None:
    await terminate(proc, grace)
    if pump is None:
        return
    try:
        await asyncio.wait_for(pump, 2.0)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pump.cancel()
