"""One sampling session: a private ring directory, the sampler process, and the recorder that
drains it into a samples file and the open sinks.

``jetpower sample`` runs one session; the campaign's :class:`~jetpower.campaign.sampling.
SamplingService` runs one after another (a new one when a sampler dies and the plan allows a
restart).  Both assemble the pipeline here, so it exists once::

    async with ring_directory(capacity, len(sensor.channels)) as ring_dir:
        async with session(decoder, ring_dir / "sampler.ring", csv, rate_hz=..., cpu=...,
                           capacity=..., sinks=sinks) as s:
            ...                       # s.handle, s.recorder, s.anchor
            await s.handle.stop()     # optional: the block's end stops it anyway

On leaving the block the pump stops, the sampler is stopped and reaped, and everything it
published is drained before the samples file is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower._fs import owned_temp_dir, remove_stale
from jetpower.acquire.decode import Decoder
from jetpower.acquire.health import GapWatch
from jetpower.acquire.process import (
    SHM,
    SamplerHandle,
    ring_bytes,
    ring_dir_parent,
    start_sampler,
)
from jetpower.acquire.recorder import Recorder
from jetpower.timebase import Anchor


@dataclass(frozen=True)
class Session:
    handle: SamplerHandle
    recorder: Recorder
    anchor: Anchor


RING_PREFIX = "jetpower-ring-"


@contextlib.contextmanager
def ring_directory(capacity: int, nchan: int) -> Iterator[Path]:
    """A private temporary directory for ring files, in shared memory where they fit.

    It records its owner's pid; rings left by owners that died without cleaning up (SIGKILL) are
    removed first, from shared memory and the temporary directory alike (a ring can be GBs).
    """
    parent = ring_dir_parent(ring_bytes(capacity, nchan))
    for place in {SHM, tempfile.gettempdir()} - {parent or tempfile.gettempdir()}:
        remove_stale(Path(place), RING_PREFIX)
    with owned_temp_dir(RING_PREFIX, parent) as tmp:
        yield tmp


@contextlib.asynccontextmanager
async def session(decoder: Decoder, ring: Path, samples_csv: Path | None, *, rate_hz: float,
                  cpu: int | None, capacity: int, sinks: list[Any] | None = None,
                  watch: GapWatch | None = None,
                  **sampler_options: Any) -> AsyncIterator[Session]:
    """Start the sampler on ``decoder.sensor`` and drain it for the block (see the module)."""
    async with start_sampler(decoder.sensor, ring, rate_hz=rate_hz, cpu=cpu, capacity=capacity,
                             **sampler_options) as handle:
        info = handle.reader.info
        anchor = Anchor(info.anchor_realtime_ns, info.anchor_monotonic_ns, info.anchor_error_ns)
        async with Recorder(handle, decoder, samples_csv, watch=watch) as rec:
            if sinks is not None:
                rec.sinks = sinks
            pump = asyncio.ensure_future(rec.run())
            # the pump failing (a full disk) ends the session's task at once, with its error
            owner = asyncio.current_task()
            pump.add_done_callback(lambda f: _stop_owner(f, owner))
            try:
                yield Session(handle, rec, anchor)
            finally:
                pump.cancel()
                failed = (await asyncio.gather(pump, return_exceptions=True))[0]
                if handle.alive:
                    await handle.stop()
                if isinstance(failed, Exception):  # not a CancelledError: the pump failed
                    raise failed from None


def _stop_owner(pump: asyncio.Future[None], owner: asyncio.Task[Any] | None) -> None:
    if owner is not None and not pump.cancelled() and pump.exception() is not None:
        owner.cancel()
