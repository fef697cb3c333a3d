"""Start and own the sampler process, with a ready handshake and a timeout.

The sampler is ready when its ring header is valid and its sequence moves.  It is stopped with
SIGTERM (the C loop finishes its pass and leaves a consistent ring), then reaped; its last stdout
line reports its CPU time and the priority it was granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The ring's reader drains into numpy arrays.  Imported now, with this module, so that its ~0.15 s
# import never falls between a sampler's start and its ready handshake (the sampler child itself
# never imports numpy).
import numpy  # noqa: F401

from jetpower._native import RingReader, record_size
from jetpower._process import child, terminate
from jetpower.errors import SamplerError
from jetpower.log import get_logger
from jetpower.sensors import SensorSet

DEFAULT_CAPACITY = 65536

log = get_logger()


SHM = "/dev/shm"  # noqa: S108  (a private directory is made inside it)


def ring_bytes(capacity: int, nchan: int) -> int:
    """Size of a ring file: the header and ``capacity`` records of ``nchan`` values."""
    return 8192 + capacity * record_size(nchan)


def ring_dir_parent(ring_bytes: int) -> str | None:
    """Where the ring's temporary directory goes: shared memory when there is room.

    A ring mapped from a file on disk is written back by the kernel every few seconds (a store
    into a page under writeback can stall the sampling loop) and wears a Jetson's eMMC or SD
    card; tmpfs has neither.  ``None``: the system's temporary directory.
    """
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return SHM if os.access(SHM, os.W_OK | os.X_OK) and free > 2 * ring_bytes else None


def default_cpu() -> int:
    """The last CPU this process may run on (on a Jetson: the last online core)."""
    return max(os.sched_getaffinity(0))


#: where the per-CPU sampler locks live (the environment variable moves them, for tests)
LOCK_DIR_ENV = "JETPOWER_LOCK_DIR"


def _lock_dir() -> Path:
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    for d in ("/run/lock", SHM):
        if os.access(d, os.W_OK | os.X_OK):
            return Path(d)
    return Path(tempfile.gettempdir())


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "an unknown process"
    return f"pid {text}" if text.isdigit() else "an unknown process"


def _try_lock(cpu: int) -> int | None:
    """The descriptor holding CPU ``cpu``'s sampler lock, or None when another process holds it."""
    path = _lock_dir() / f"jetpower-sampler-cpu{cpu}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise SamplerError(f"cannot open the sampler CPU lock {path}: {e.strerror}") from e
    except OSError as e:
        raise SamplerError(f"cannot open the sampler CPU lock {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # read-only (another user's file): the lock still holds
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def claim_cpu(cpu: int | None) -> tuple[int, int]:
    """A CPU for the sampler that no other jetpower's sampler uses: ``(cpu, lock fd)``.

    Each sampler CPU is claimed by an flock on ``jetpower-sampler-cpu<N>.lock`` (in /run/lock or
    /dev/shm), which records the holder's pid and is released when the holder exits, however.
    ``cpu`` given (the plan or ``--cpu`` names it): held by another process is an error naming
    that process.  ``None`` (the default, the last CPU): a held last CPU moves the sampler to the
    highest free one, with a warning event.
    """
    allowed = sorted(os.sched_getaffinity(0), reverse=True)
    want = allowed[0] if cpu is None else cpu
    fd = _try_lock(want)
    if fd is not None:
        return want, fd
    path = _lock_dir() / f"jetpower-sampler-cpu{want}.lock"
    if cpu is not None:
        raise SamplerError(
            f"sampler CPU {cpu} is in use by another jetpower sampler ({_holder(path)}, lock "
            f"{path}); choose another CPU (sampler.cpu / --cpu) or wait until it ends")
    for other in allowed[1:]:
        fd = _try_lock(other)
        if fd is not None:
            log.warning("sampler_cpu_moved", wanted=want, cpu=other, held_by=_holder(path),
                        note="another jetpower samples on the last CPU; this sampler takes "
                             "the highest free one")
            return other, fd
    raise SamplerError(f"every CPU this process may use ({sorted(allowed)}) has a jetpower "
                       f"sampler already (CPU {want}: {_holder(path)})")


@dataclass
class SamplerHandle:
    proc: asyncio.subprocess.Process
    reader: RingReader
    ring_path: Path
    cpu: int
    exit_report: dict[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, grace: float = 3.0) -> dict[str, Any]:
        """SIGTERM the sampler, reap it, and return its exit report (CPU seconds, priority)."""
        code = await terminate(self.proc, grace)
        if self.proc.stdout is not None:
            with contextlib.suppress(asyncio.TimeoutError, ValueError):
                line = await asyncio.wait_for(self.proc.stdout.readline(), 1.0)
                if line.strip():
                    self.exit_report = json.loads(line)
        self.exit_report.setdefault("exit_code", code)
        return self.exit_report


async def _handshake(proc: asyncio.subprocess.Process, ring: Path, timeout: float) -> RingReader:
    opened: list[RingReader] = []
    try:
        return await _wait_ready(proc, ring, timeout, opened)
    except BaseException:
        # every way out but success (an error, a timeout, a cancellation) closes the reader:
        # its descriptor and mapping would outlive the handshake otherwise
        for reader in opened:
            reader.close()
        raise


async def _wait_ready(proc: asyncio.subprocess.Process, ring: Path, timeout: float,
                      opened: list[RingReader]) -> RingReader:
    """The reader once the sampler is ready; the reader it opens goes into ``opened`` at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if proc.returncode is not None:
            raise SamplerError(
                f"the sampler process exited with status {proc.returncode} before it was "
                "ready (its error is in the log, event child_stderr)"
            )
        if not opened and ring.exists() and ring.stat().st_size > 0:
            with contextlib.suppress(SamplerError):
                opened.append(RingReader(ring))
        if opened and opened[0].ready() and opened[0].counters().samples > 0:
            return opened[0]
        if loop.time() > deadline:
            raise SamplerError(f"the sampler was not ready within {timeout:g} s ({ring})")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def start_sampler(
    sensor: SensorSet,
    ring_path: Path,
    *,
    rate_hz: float,
    cpu: int | None = None,
    capacity: int = DEFAULT_CAPACITY,
    fifo: bool = True,
    ready_timeout: float = 10.0,
) -> AsyncIterator[SamplerHandle]:
    """Run the sampler on ``sensor``'s channels for the duration of the block."""
    if ring_path.exists():
        raise SamplerError(f"ring file {ring_path} already exists; refusing to overwrite it")
    if cpu is not None and cpu not in os.sched_getaffinity(0):
        raise SamplerError(
            f"sampler CPU {cpu} is not available; this process may use CPUs "
            f"{sorted(os.sched_getaffinity(0))}"
        )
    cpu, lock_fd = claim_cpu(cpu)
    try:
        async with _started(sensor, ring_path, rate_hz=rate_hz, cpu=cpu, capacity=capacity,
                            fifo=fifo, ready_timeout=ready_timeout) as handle:
            yield handle
    finally:
        os.close(lock_fd)  # the flock goes with it


@contextlib.asynccontextmanager
async def _started(sensor: SensorSet, ring_path: Path, *, rate_hz: float, cpu: int,
                   capacity: int, fifo: bool, ready_timeout: float,
                   ) -> AsyncIterator[SamplerHandle]:
    channels = sensor.channels
    spec = {
        "ring": str(ring_path),
        "paths": [str(c.path) for c in channels],
        "names": [c.name for c in channels],
        "units": [c.unit for c in channels],
        "capacity": capacity,
        "rate_hz": rate_hz,
        "cpu": cpu,
        "fifo": fifo,
    }
    argv = [sys.executable, "-m", "jetpower.sampler", json.dumps(spec)]
    async with child(argv, name="sampler", stdout=asyncio.subprocess.PIPE, grace=3.0) as proc:
        reader = await _handshake(proc, ring_path, ready_timeout)
        handle = SamplerHandle(proc, reader, ring_path, cpu)
        try:
            yield handle
        finally:
            if handle.alive:
                await asyncio.shield(handle.stop())
            reader.close()
