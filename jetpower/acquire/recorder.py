"""Acquisition: resolve the sensor, run the simulated source, drain the sampler continuously.

:class:`Recorder` drains the ring every ``interval`` seconds into the run's samples CSV (whole
rows, written in a thread, never blocking the loop) and hands each batch of readings to the sinks
that are open (a phase's integrator, a model's power log).  One sampler, one continuous stream:
phases are time windows over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jetpower._fs import owned_temp_dir
from jetpower._process import child
from jetpower.acquire.decode import Batch, Decoder, Reading
from jetpower.acquire.energy import Integrator
from jetpower.acquire.health import DEFAULT_MIN_COVERAGE, GapWatch, StreamHealth
from jetpower.acquire.process import SamplerHandle
from jetpower.acquire.samples_csv import RowFile
from jetpower.acquire.samples_csv import Writer as SamplesWriter
from jetpower.errors import SensorError, storage_error
from jetpower.log import get_logger
from jetpower.sensors import SensorSet, discover, truthbus
from jetpower.sensors.simulate import create_tree
from jetpower.timebase import monotonic_ns

log = get_logger()

SIM_PREFIX = "jetpower-sim-"


@contextlib.asynccontextmanager
async def sensor_source(
    *,
    root: Path = Path("/"),
    source: str = "auto",
    rails: Sequence[str] | None = None,
    total: Sequence[str] | None = None,
    truth: Path | None = None,
) -> AsyncIterator[SensorSet]:
    """The sensor to sample; for ``simulated``, a fake tree and its generator for the block.

    Simulated only: the generator follows a truth bus created here (the yielded sensor's
    ``truth_bus``, for the workers' config), and with ``truth`` writes the simulator truth file
    there (docs/FORMATS.md, "Simulator truth")."""
    if source != "simulated":
        yield discover(root, source).select(tuple(rails or ()) or None, tuple(total or ()) or None)
        return
    with owned_temp_dir(SIM_PREFIX) as tmp:  # stale trees of dead owners are removed first
        tree = create_tree(tmp)
        sensor = discover(tree, "simulated").select(
            tuple(rails or ()) or None, tuple(total or ()) or None
        )
        bus = truthbus.create(Path(tmp) / "truth.bus")
        sensor = replace(sensor, truth_bus=bus)
        argv = [sys.executable, "-m", "jetpower.sensors.simulate", str(tree), "--truth-bus",
                str(bus), *(["--truth", str(truth)] if truth is not None else [])]
        async with child(argv, name="simulator", stdout=asyncio.subprocess.PIPE, grace=2.0) as p:
            assert p.stdout is not None
            try:
                line = await asyncio.wait_for(p.stdout.readline(), 10.0)
            except asyncio.TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise SensorError("the simulated sensor's generator did not start")
            log.warning("simulated_sensor", root=str(tree),
                        note="SIMULATED power: these numbers are not measurements")
            yield sensor


class Sink(Protocol):
    def feed(self, readings: Sequence[Reading]) -> None: ...


class WindowSink:
    """Integrates the total power of the readings inside ``[start_ns, end_ns]``."""

    def __init__(self, start_ns: int, end_ns: int | None = None, *,
                 rule: str = "trapezoid", before: Reading | None = None) -> None:
        self.integrator = Integrator(rule, start_ns, end_ns)
        self.stream = StreamHealth(start_ns, end_ns)
        if before is not None:  # the last reading before the window: its first segment
            self.integrator.add(before.t_ns, before.total_uw)

    @property
    def start_ns(self) -> int:
        assert self.integrator.start_ns is not None
        return self.integrator.start_ns

    @property
    def end_ns(self) -> int | None:
        return self.integrator.end_ns

    @end_ns.setter
    def end_ns(self, value: int | None) -> None:
        self.integrator.end_ns = value
        self.stream.end_ns = value

    def feed(self, readings: Sequence[Reading]) -> None:
        if isinstance(readings, Batch):
            t, uw = readings.t_ns, readings.total_uw
            self.integrator.add_many(t, uw)
        else:
            self.integrator.add_many([r.t_ns for r in readings], [r.total_uw for r in readings])
            t = np.array([r.t_ns for r in readings], dtype=np.int64)
        self.stream.feed(t)

    def health(self, *, period_ns: int, max_gap_ns: int,
               min_coverage: float = DEFAULT_MIN_COVERAGE) -> dict[str, Any]:
        """Coverage, achieved rate and gaps over the window as requested (its end must be set):
        see :func:`jetpower.acquire.health.window_health`."""
        assert self.end_ns is not None, "the window has no end yet"
        return self.stream.health(self.start_ns, self.end_ns, period_ns=period_ns,
                                  max_gap_ns=max_gap_ns, min_coverage=min_coverage)


class Recorder:
    """Drains the sampler ring continuously; writes every reading to the samples CSV."""

    def __init__(self, handle: SamplerHandle, decoder: Decoder, samples_csv: Path | None,
                 *, interval: float = 0.05, batch: int = 16384,
                 watch: GapWatch | None = None) -> None:
        self.handle = handle
        self.batch = batch
        #: stall and gap detection over the drained stamps (see :mod:`jetpower.acquire.health`)
        self.watch = watch
        self.decoder = decoder
        self.samples_csv = samples_csv
        self._writer = SamplesWriter(decoder.sensor)
        self.interval = interval
        self.sinks: list[Sink] = []
        self.samples = 0
        self.lost = 0
        self.last: Reading | None = None
        self._fh: Any = None
        #: bytes written to the samples CSV so far (it is ASCII): where the next row will start
        self.csv_bytes = 0
        # one drain at a time: the pump and a phase's final drain must not interleave their
        # writes (each aiofiles write runs in an executor thread: order is not kept otherwise)
        self._lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> Recorder:
        if self.samples_csv is not None:
            self._fh = RowFile(self.samples_csv)  # whole rows, never through a symlink
            header = self._writer.header()
            await self._fh.write(header)
            self.csv_bytes = len(header)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        await self.drain()
        async with self._lock:
            self._closed = True
            if self._fh is not None:
                await self._fh.close()
                self._fh = None

    async def drain(self) -> int:
        """Copy out everything published so far; feed the sinks; append to the CSV.

        Never cut short by a cancellation (a phase's end interrupted by SIGINT, the pump
        stopped): cancelling the await of an aiofiles write does not stop the write in its
        executor thread, and the file's close could then run before it and lose those rows.
        Shielded, the drain finishes while it holds the lock, and a later close waits for it.
        """
        return await asyncio.shield(self._drain_locked())

    async def _drain_locked(self) -> int:
        async with self._lock:
            if self._closed:  # the sampler's reader may be closed already
                return 0
            try:
                return await self._drain()
            except OSError as e:  # a sink's file (power log) on a full or read-only disk
                if (err := storage_error(e)) is None:
                    raise
                raise err from None

    async def _drain(self) -> int:
        """Takes what was published when it started (never chases a sampler that outruns it),
        in batches of at most ``batch`` records, yielding to the event loop between them."""
        reader = self.handle.reader
        target = reader.counters().samples
        total = 0
        while True:
            records, lost = reader.drain(self.batch)
            if lost:
                self.lost += lost
                log.warning("sampler_overrun", lost=lost, total_lost=self.lost)
            if not len(records):
                return total
            batch = self.decoder.decode_batch(records)
            if self.watch is not None:
                self.watch.feed(batch.t_ns)
            self.samples += len(batch)
            total += len(batch)
            self.last = batch[-1]
            for sink in list(self.sinks):
                sink.feed(batch)
                flush = getattr(sink, "flush", None)
                if flush is not None:
                    await flush()
            if self._fh is not None:
                text = self._writer.rows_batch(batch)
                await self._fh.write(text)
                self.csv_bytes += len(text)
            if reader.position >= target:
                return total
            await asyncio.sleep(0)  # the rest of the loop runs between batches

    async def drain_now(self) -> int:
        """Everything sampled until now: waits for the sample that straddles this instant (the
        sampler publishes it at most a period later), then drains."""
        rate = self.handle.reader.current_rate()
        await asyncio.sleep(max(0.002, 2 / rate) if rate > 0 else 0.002)
        return await self.drain()

    async def flush(self) -> None:
        """Push what was written to the samples CSV to the file, so that it can be read back."""
        async with self._lock:
            if self._fh is not None:
                await self._fh.flush()

    async def run(self) -> None:
        """Drain forever (until cancelled)."""
        while True:
            await self.drain()
            if self.watch is not None:
                self.watch.check(monotonic_ns())
            await asyncio.sleep(self.interval)
