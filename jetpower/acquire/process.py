"""Start and own the sampler process, with a ready handshake and a timeout.

The sampler is ready when its ring header is valid and its sequence moves.  It is stopped with
SIGTERM (the C loop finishes its pass and leaves a consistent ring), then reaped; its last stdout
line reports its CPU time and the priority it was granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
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
from jetpower.sensors import SensorSet

DEFAULT_CAPACITY = 65536


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
    cpu = default_cpu() if cpu is None else cpu
    if cpu not in os.sched_getaffinity(0):
        raise SamplerError(
            f"sampler CPU {cpu} is not available; this process may use CPUs "
            f"{sorted(os.sched_getaffinity(0))}"
        )
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
