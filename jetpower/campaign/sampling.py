"""The campaign's one sampler: started once, drained continuously, watched, replaced if it dies.

:class:`SamplingService` owns the sampler process and the recorder that drains its ring into the
run's samples CSV and into the sinks that the phases open.  It reports a heartbeat, notices failing
channels, and on the sampler's death either stops the run or (``restart_on_failure``) starts a new
sampler, recording the gap.  The sequence of phases lives in :mod:`jetpower.campaign.supervisor`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jetpower._fs import first_free
from jetpower.acquire.decode import Batch, Decoder, Reading
from jetpower.acquire.health import Gap, GapWatch
from jetpower.acquire.process import SamplerHandle
from jetpower.acquire.recorder import Recorder
from jetpower.acquire.session import session
from jetpower.campaign.manifest import Manifest
from jetpower.errors import SamplerError
from jetpower.log import get_logger
from jetpower.plan import Plan
from jetpower.timebase import Anchor, monotonic_ns

log = get_logger()

SAMPLES_CSV = "jetpower_samples.csv"
MAX_SAMPLER_RESTARTS = 3
#: a resumed run keeps its first clock anchor while the clocks still agree with it this well
ANCHOR_KEEP_NS = 1_000_000_000


@dataclass
class _Heartbeat:
    """Sink: sum and count of total power since the last heartbeat."""

    sum_uw: float = 0.0
    count: int = 0

    def feed(self, readings: Sequence[Reading]) -> None:
        if isinstance(readings, Batch):
            ok = readings.total_uw[~np.isnan(readings.total_uw)]
            self.sum_uw += float(ok.sum())
            self.count += int(ok.size)
            return
        for r in readings:
            if r.total_uw is not None:
                self.sum_uw += r.total_uw
                self.count += 1

    def take(self) -> float | None:
        mean = self.sum_uw / self.count if self.count else None
        self.sum_uw, self.count = 0.0, 0
        return mean


class SamplingService:
    """The sampler of one campaign, and what the phases need of it."""

    def __init__(self, plan: Plan, manifest: Manifest, decoder: Decoder, ring_dir: Path, *,
                 resume: bool, earlier_samples_files: Sequence[str] = ()) -> None:
        self.plan = plan
        self.manifest = manifest
        self.decoder = decoder
        self.ring_dir = ring_dir
        self.resume = resume
        self.result_dir = plan.result_dir
        self.sinks: list[Any] = []  # fed every batch of readings, by whichever recorder runs
        self.handle: SamplerHandle | None = None  # None while a dead sampler is being replaced
        self.recorder: Recorder | None = None
        self.anchor: Anchor | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.channel_alerts: set[str] = set()
        self.restarts = 0
        self.samples_files: list[str] = []
        self.earlier_samples_files = list(earlier_samples_files)
        #: the phase in progress (name, model), for the gaps it is hit by
        self.phase: tuple[str, str | None] = ("start", None)
        #: stalls and gaps of the whole run, across sampler restarts
        self.watch = GapWatch(int(plan.sampler.gap_limit_s() * 1e9), on_gap=self._gap)

    @contextlib.contextmanager
    def in_phase(self, name: str, model: str | None = None) -> Iterator[None]:
        """Gaps found during the block are recorded as hitting phase ``name`` (of ``model``)."""
        before = self.phase
        self.phase = (name, model)
        try:
            yield
        finally:
            self.phase = before

    def _gap(self, gap: Gap) -> None:
        name, model = self.phase
        entry = {**gap.to_dict(), "phase": name, "model": model}
        self.manifest.data.setdefault("sampler_gaps", []).append(entry)
        self.manifest.write()

    def current_rate(self) -> float:
        return self.handle.reader.current_rate() if self.handle else 0.0

    def request_rate(self, rate_hz: float) -> None:
        if self.handle is not None:
            self.handle.reader.request_rate(rate_hz)
        # the gap limit follows the pace (50 periods of a slow model rate is longer)
        self.watch.max_gap_ns = int(self.plan.sampler.gap_limit_s(rate_hz) * 1e9)

    async def drain_now(self) -> None:
        """Everything sampled until now, fed to the sinks (see :meth:`Recorder.drain_now`)."""
        if self.recorder is not None:
            await self.recorder.drain_now()

    async def run(self) -> None:
        """Run the sampler until ``stopping`` is set; replace it if it dies and the plan says so."""
        decoder = self.decoder
        s = self.plan.sampler
        cpu = None if s.cpu == "last" else int(s.cpu)  # None: the last free one
        rate = self.plan.sampler.rate_hz
        while True:
            ring = self.ring_dir / f"sampler-{self.restarts}.ring"
            csv_name = SAMPLES_CSV if not self.samples_files else \
                f"jetpower_samples.part{len(self.samples_files) + 1}.csv"
            if (self.result_dir / csv_name).exists():  # a resumed run: never overwrite
                csv_name = first_free(
                    lambda k: self.result_dir / f"jetpower_samples.resume{k}.csv").name
            async with session(decoder, ring, self.result_dir / csv_name, rate_hz=rate,
                               cpu=cpu, capacity=s.ring_capacity, sinks=self.sinks,
                               watch=self.watch) as ses:
                h, rec = ses.handle, ses.recorder
                self._sampler_started(h, ses.anchor)
                self.samples_files.append(csv_name)
                self.manifest.data["sampler"]["samples_files"] = \
                    self.earlier_samples_files + self.samples_files
                self.recorder = rec
                self.handle = h
                self.ready.set()
                stop = asyncio.ensure_future(self.stopping.wait())
                died = asyncio.ensure_future(h.proc.wait())
                try:
                    await asyncio.wait({stop, died}, return_when=asyncio.FIRST_COMPLETED)
                    if stop.done():
                        await h.stop()
                finally:
                    for t in (stop, died):
                        t.cancel()
                    await asyncio.gather(stop, died, return_exceptions=True)
                self._record_sampler(h)
                rate = h.reader.current_rate()  # a model's rate, if one was requested
            # the reader is closed once the session ends: nothing may use it after
            self.recorder = None
            self.handle = None
            if self.stopping.is_set():
                self.watch.close(monotonic_ns())
                return
            code = h.proc.returncode
            last = rec.last.t_ns if rec.last else None
            self._sampler_died(code, last)

    def _sampler_started(self, h: SamplerHandle, anchor: Anchor) -> None:
        info = h.reader.info
        m = self.manifest
        assert m is not None
        if self.anchor is None:
            self.anchor = anchor
            m.data.setdefault("anchor", anchor.to_dict())
            if self.resume:  # a resumed run keeps its first anchor; record this one beside it
                m.data.setdefault("anchors", []).append(anchor.to_dict())
                first = Anchor.from_dict(m.data["anchor"])
                # ... unless the first one no longer maps this boot's monotonic clock (a reboot
                # or a clock step since): then wall-clock text must come from the new pair
                offset = (anchor.realtime_ns - anchor.monotonic_ns) - \
                    (first.realtime_ns - first.monotonic_ns)
                if abs(offset) <= ANCHOR_KEEP_NS:
                    self.anchor = first
                else:
                    log.warning("anchor_changed", offset_ns=offset,
                                note="the clocks moved since the first session (reboot?); "
                                     "this session's wall-clock text uses a new anchor")
                    m.note("anchor_changed", offset_ns=offset, anchor=anchor.to_dict())
        sensor = self.decoder.sensor
        log.info("sampler_started", pid=h.proc.pid, cpu=info.cpu, sched=info.sched_policy,
                 priority=info.sched_priority, rate_hz=info.rate_hz, rails=list(sensor.labels),
                 simulated=sensor.simulated)
        if info.sched_policy != "SCHED_FIFO":
            log.warning("sampler_priority", granted=info.sched_policy,
                        note="SCHED_FIFO needs CAP_SYS_NICE; sampling at normal priority")
        m.data["sampler"] = {"rate_hz": self.plan.sampler.rate_hz, "cpu": info.cpu,
                             "sched": info.sched_policy, "sched_priority": info.sched_priority,
                             "capacity": info.capacity, "restarts": self.restarts}

    def _record_sampler(self, h: SamplerHandle) -> None:
        c = h.reader.counters()
        info = h.reader.info
        m = self.manifest
        assert m is not None
        totals = m.data.setdefault("sampler_totals", {"samples": 0, "overruns": 0,
                                                      "missed_deadlines": 0, "read_errors": {}})
        totals["samples"] += c.samples
        totals["overruns"] += c.overruns
        totals["missed_deadlines"] += c.missed_deadlines
        for name, n in zip(info.names, c.read_errors):
            totals["read_errors"][name] = totals["read_errors"].get(name, 0) + n
        totals["cpu_seconds"] = totals.get("cpu_seconds", 0.0) + float(
            h.exit_report.get("cpu_seconds") or 0.0)
        totals["priority"] = h.exit_report.get("priority")

    def _sampler_died(self, code: int | None, last_ns: int | None) -> None:
        m = self.manifest
        assert m is not None
        log.error("sampler_died", exit_code=code, last_sample_ns=last_ns,
                  restart=self.plan.sampler.restart_on_failure)
        m.note("sampler_died", exit_code=code, last_sample_ns=last_ns)
        if not self.plan.sampler.restart_on_failure or self.restarts >= MAX_SAMPLER_RESTARTS:
            raise SamplerError(f"the sampler process died (exit status {code}); run stopped")
        self.restarts += 1
        m.note("sampler_restarted", gap_start_ns=last_ns, restart=self.restarts)
        m.write()

    async def heartbeat(self) -> None:
        """Every heartbeat_seconds: rate, samples, mean power, counters; channel failures."""
        beat = _Heartbeat()
        self.sinks.append(beat)
        every = self.plan.sampler.heartbeat_seconds
        await self.ready.wait()
        last_samples, last_t = 0, monotonic_ns()
        last_errors: tuple[int, ...] = ()
        while True:
            await asyncio.sleep(min(every, 1.0) if every > 1.0 else every)
            h = self.handle
            if h is None:
                continue
            c = h.reader.counters()
            self._check_channels(h, c.read_errors, last_errors, c.failing, c.gone)
            last_errors = c.read_errors
            now = monotonic_ns()
            if (now - last_t) / 1e9 + 1e-3 < every:
                continue
            dt = (now - last_t) / 1e9
            samples = c.samples
            delta = samples - last_samples if samples >= last_samples else samples
            log.info("sampler_heartbeat", rate_hz=round(delta / dt, 2), samples=samples,
                     avg_power_uw=beat.take(), overruns=c.overruns,
                     read_errors=sum(c.read_errors), missed_deadlines=c.missed_deadlines)
            last_samples, last_t = samples, now

    def _check_channels(self, h: SamplerHandle, errors: tuple[int, ...], before: tuple[int, ...],
                        failing: tuple[bool, ...], gone: tuple[bool, ...]) -> None:
        names = h.reader.info.names
        for i, name in enumerate(names):
            grew = errors[i] - (before[i] if i < len(before) else 0)
            if (gone[i] or failing[i]) and name not in self.channel_alerts:
                self.channel_alerts.add(name)
                why = "its file was removed" if gone[i] else "its reads fail"
                log.error("channel_failed", channel=name, reason=why, read_errors=errors[i])
                assert self.manifest is not None
                self.manifest.note("channel_failed", channel=name, reason=why,
                                   at_ns=monotonic_ns())
                self.manifest.write()
            elif grew > 0 and name not in self.channel_alerts:
                log.warning("sensor_read_errors", channel=name, new_errors=grew)
