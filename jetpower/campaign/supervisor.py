"""The campaign supervisor: one asyncio process that sequences the phases and owns every child.

idle baseline -> cooldown -> for each model: benchmark (a worker process) -> cooldown.  One sampler
runs for the whole campaign and is drained continuously; phases are windows over its stream.  The
manifest is rewritten at every change of phase, so whatever stops the run, what was measured until
then is on disk and described.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from jetpower._compat import TaskGroup
from jetpower._fs import (
    DirLock,
    atomic_write_json,
    first_free,
    in_use_message,
    lock_holder,
    prepare_new_dir,
)
from jetpower.acquire.decode import Decoder
from jetpower.acquire.energy import METHOD as WINDOW_METHOD
from jetpower.acquire.energy import read_segment, window_energies
from jetpower.acquire.power_log import PowerLogSink
from jetpower.acquire.recorder import Recorder, WindowSink, sensor_source
from jetpower.acquire.samples_csv import ends_torn
from jetpower.acquire.session import ring_directory
from jetpower.campaign import environment, thermal
from jetpower.campaign.chipsettings import chip_settings
from jetpower.campaign.manifest import Manifest
from jetpower.campaign.sampling import SamplingService
from jetpower.campaign.workers import failure_file_reason, run_worker
from jetpower.errors import (
    JetpowerError,
    SamplerError,
    SensorError,
    StorageError,
    UploadError,
    UsageError,
    storage_error,
)
from jetpower.log import get_logger, log_to_file
from jetpower.plan import ModelPlan, Plan
from jetpower.sensors import SensorSet
from jetpower.timebase import STAMP_FMT, Anchor, monotonic_ns, wall_text
from jetpower.worker.config import WorkerConfig

log = get_logger()

LOG_NAME = "run.log.jsonl"
IDLE_JSON = "idling_power.json"
#: simulated runs: what the simulator did, for the report's self-check (docs/FORMATS.md)
SIMULATOR_TRUTH = "jetpower_simulator_truth.json"
WORKER_READY_TIMEOUT_S = 900.0
#: bytes held in the lock file while a run lives, freed to write the manifest on a full disk
STORAGE_RESERVE = 1 << 20

# exit statuses of `jetpower run` (interruptions re-raise the signal instead)
EXIT_OK = 0
EXIT_MODELS_FAILED = 1
EXIT_SENSOR = 3
EXIT_SAMPLER = 4
EXIT_UPLOAD = 6
EXIT_STORAGE = 7  # StorageError: a full or read-only result directory


@dataclass
class Campaign:
    plan: Plan
    resume: bool = False
    root: Path = Path("/")
    interrupted_by: int | None = None

    def __post_init__(self) -> None:
        self.result_dir = self.plan.result_dir
        self.sensor: SensorSet | None = None
        self.manifest: Manifest | None = None
        self.idle_temps: dict[str, float] = {}
        self.earlier_samples_files: list[str] = []  # of the sessions before a resume
        self._sampling: SamplingService | None = None
        self._lock: DirLock | None = None

    @property
    def sampling(self) -> SamplingService:
        assert self._sampling is not None, "the sampler is not set up yet"
        return self._sampling

    @property
    def sinks(self) -> list[Any]:
        return self.sampling.sinks

    @property
    def anchor(self) -> Anchor:
        anchor = self.sampling.anchor
        assert anchor is not None, "no sampler has started yet"
        return anchor

    # -- entry ------------------------------------------------------------------------------

    async def run(self) -> int:
        plan = self.plan
        if plan.upload.enabled:
            from jetpower.upload import check_access

            check_access(str(plan.upload.repo))  # before anything is measured or written
        # one jetpower per result directory: held for the whole run (the kernel frees it on death)
        with self._lock_result_dir() as self._lock:
            manifest = self._open_result_dir()
            log_to_file(self.result_dir / LOG_NAME)
            structlog.contextvars.bind_contextvars(run=plan.run.name)
            for name in self.earlier_samples_files:  # a run stopped mid-write: say what is lost
                if ends_torn(self.result_dir / name):
                    log.warning("samples_torn_row", file=name,
                                reason="its last row was cut short when the run stopped; "
                                "readers leave it out")
            try:
                return await self._run(manifest)
            finally:
                structlog.contextvars.unbind_contextvars("run")
                log_to_file(None)

    def _lock_result_dir(self) -> DirLock:
        what = "result directory"
        if not self.resume:
            if self.result_dir.is_dir() and (holder := lock_holder(self.result_dir)):
                raise UsageError(in_use_message(self.result_dir, holder, what))
            prepare_new_dir(self.result_dir, what)
        elif not self.result_dir.is_dir():
            raise UsageError(f"--resume: result directory {str(self.result_dir)!r} does not exist")
        return DirLock(self.result_dir, what, reserve=STORAGE_RESERVE)

    def _open_result_dir(self) -> Manifest:
        if not self.resume:
            return Manifest.new(self.result_dir, plan=self.plan.to_dict(), plan_text=self.plan.text)
        m = Manifest.load(self.result_dir)
        if m.data.get("status") == "complete":
            raise UsageError(f"{str(self.result_dir)!r} holds a complete run: nothing to resume")
        m.data["status"] = "running"
        m.data.setdefault("resumed", []).append({"plan": self.plan.to_dict()})
        self.earlier_samples_files = list(m.data.get("sampler", {}).get("samples_files", []))
        return m

    async def _run(self, manifest: Manifest) -> int:
        plan = self.plan
        self.manifest = manifest
        s = plan.sampler
        log.info("run_started", result_dir=str(self.result_dir),
                 models=[m.label for m in plan.models], resume=self.resume,
                 simulated=plan.simulated,
                 estimated_s=round(plan.estimated_seconds()))
        manifest.data["environment"] = environment.describe(self.root)
        exit_code = EXIT_OK
        storage: StorageError | None = None
        try:
            async with chip_settings(plan, self.root, self.result_dir, manifest), \
                    sensor_source(root=self._sensor_root(), source=s.source, rails=s.rails,
                                  total=s.total_rail,
                                  truth=self.result_dir / SIMULATOR_TRUTH) as sensor:
                self.sensor = sensor
                manifest.data["simulated"] = sensor.simulated
                manifest.data["sensor"] = sensor.to_dict()
                if sensor.simulated:
                    manifest.data["simulated_note"] = "SIMULATED sensor: no number is a measurement"
                manifest.data["probe"] = await self._characterise(sensor)
                manifest.data["time"] = _time_method(sensor)
                try:
                    exit_code = await self._with_sampler(sensor)
                except Exception as group:  # a TaskGroup wraps its tasks' errors in a group
                    raise _unwrap(group) from None
        except asyncio.CancelledError:
            manifest.data["status"] = "interrupted"
            manifest.data["interrupted_by"] = self.interrupted_by
            exit_code = -1
        except SamplerError as e:
            manifest.data["status"] = "failed"
            manifest.data["reason"] = str(e)
            log.error("run_failed", reason=str(e))
            exit_code = EXIT_SAMPLER
        except JetpowerError as e:
            manifest.data["status"] = "failed"
            manifest.data["reason"] = str(e)
            log.error("run_failed", reason=str(e))
            exit_code = e.exit_code
            storage = e if isinstance(e, StorageError) else None
        except Exception as e:  # a bug: say so in the manifest, never leave it "complete"
            if (err := storage_error(e)) is not None:  # a full or read-only disk, untranslated
                manifest.data["status"] = "failed"
                manifest.data["reason"] = str(err)
                log.error("run_failed", reason=str(err))
                storage = err
            else:
                manifest.data["status"] = "failed"
                manifest.data["reason"] = f"internal error: {type(e).__name__}: {e}"
                log.exception("run_failed", reason=manifest.data["reason"])
                raise
        finally:
            await asyncio.shield(self._finish(manifest))
        if storage is not None:  # the CLI says it in one line on stderr, and exits with 7
            raise storage
        if exit_code == EXIT_OK and plan.upload.enabled and manifest.data["status"] == "complete":
            exit_code = await self._upload()
        return exit_code

    async def _characterise(self, sensor: SensorSet) -> dict[str, Any]:
        """The sensor's self-characterisation (``probe``, briefly), before anything runs."""
        from jetpower.acquire.probe import probe

        try:
            figures = await probe(sensor, seconds=PROBE_SECONDS, reads=500)
        except JetpowerError as e:  # characterising is worth a warning, not the campaign
            log.warning("probe_failed", reason=str(e))
            return {"error": str(e)}
        log.info("sensor_probed", rails={
            r["label"]: {"read_us_median": round(r["read_us_median"], 2),
                         "change_period_ms": r.get("change_period_ms")}
            for r in figures["rails"]})
        return figures

    def _sensor_root(self) -> Path:
        s = self.plan.sampler
        if s.source == "hwmon" and s.hwmon_path is not None:
            return s.hwmon_path
        return self.root

    # -- sampling ---------------------------------------------------------------------------

    async def _with_sampler(self, sensor: SensorSet) -> int:
        decoder = Decoder(sensor)
        self.decoder = decoder
        assert self.manifest is not None
        self.manifest.data["power_log_columns"] = decoder.log_columns_note
        with ring_directory(self.plan.sampler.ring_capacity, len(sensor.channels)) as ring_dir:
            service = SamplingService(self.plan, self.manifest, decoder, ring_dir,
                                      resume=self.resume,
                                      earlier_samples_files=self.earlier_samples_files)
            self._sampling = service
            result: list[int] = []
            async with TaskGroup() as tg:
                sampling = tg.create_task(service.run())
                beat = tg.create_task(service.heartbeat())
                try:
                    result.append(await self._sequence())
                finally:
                    service.stopping.set()
                    beat.cancel()
                    await asyncio.shield(asyncio.gather(sampling, return_exceptions=True))
            return result[0]

    # -- the sequence -----------------------------------------------------------------------

    async def _sequence(self) -> int:
        await self.sampling.ready.wait()
        m = self.manifest
        assert m is not None
        m.write()
        idle_done = (self.result_dir / IDLE_JSON).exists() and m.verified(IDLE_JSON)
        if self.resume and idle_done and m.data.get("idle", {}).get("flagged"):
            log.warning("idle_remeasured", reason="the earlier idle baseline was not covered "
                        "(a gap or a collapsed rate): measured again")
            idle_done = False
        if self.resume and idle_done and not self.plan.idle.remeasure_on_resume:
            log.info("idle_kept", reason="resumed run; the idle baseline was already measured")
            self.idle_temps = dict(m.data.get("idle", {}).get("temperatures_c", {}))
        else:
            await self._idle()
            await self._cooldown("idle")
        failed = 0
        for i, mp in enumerate(self.plan.models):
            entry = m.model(mp.label)
            if self.resume and entry.get("status") == "done" and m.verified(mp.label):
                log.info("model_skipped", model=mp.label, reason="complete and verified")
                continue
            ok = await self._model(mp, i)
            failed += not ok
            await self._cooldown(mp.label)
        if self.sampling.channel_alerts:
            return EXIT_SENSOR
        return EXIT_MODELS_FAILED if failed else EXIT_OK

    def _window_sink(self, start: int) -> WindowSink:
        """A sink for the window from ``start`` on, seeded with the last reading before it."""
        rec = self.sampling.recorder
        return WindowSink(start, rule=self.decoder.integration_rule,
                          before=rec.last if rec is not None else None)

    async def _window(self, name: str, seconds: float, model: str | None = None) -> WindowSink:
        start = monotonic_ns()
        sink = self._window_sink(start)
        self.sinks.append(sink)
        log.info("phase_started", phase=name, seconds=seconds)
        try:
            with self.sampling.in_phase(name, model):
                await asyncio.sleep(seconds)
        finally:
            sink.end_ns = monotonic_ns()
            await self.sampling.drain_now()
            self.sinks.remove(sink)
        return sink

    def _health(self, sink: WindowSink, rate_hz: float | None = None) -> dict[str, Any]:
        """Coverage, achieved rate and gaps of a phase's window as requested."""
        s = self.plan.sampler
        rate = s.rate_hz if rate_hz is None else rate_hz
        return sink.health(period_ns=round(1e9 / rate), max_gap_ns=int(s.gap_limit_s(rate) * 1e9),
                           min_coverage=s.min_coverage)

    def _phase_done(self, name: str, sink: WindowSink, model: str | None = None,
                    rate_hz: float | None = None, **extra: Any) -> None:
        integ = sink.integrator
        assert self.manifest is not None
        health = self._health(sink, rate_hz)
        if health["flagged"]:
            log.warning("phase_not_covered", phase=name, coverage=health["coverage"],
                        largest_gap_s=health["largest_gap_s"], gaps=len(health["gaps"]),
                        min_coverage=self.plan.sampler.min_coverage)
        self.manifest.add_phase(name, model, sink.start_ns, int(sink.end_ns or 0),
                                samples=integ.count, invalid_samples=integ.invalid,
                                avg_power_uw=integ.mean_uw, energy_uj=integ.energy_uj,
                                health=health, flagged=health["flagged"], **extra)
        log.info("phase_finished", phase=name, samples=integ.count, avg_power_uw=integ.mean_uw,
                 seconds=round((int(sink.end_ns or 0) - sink.start_ns) / 1e9, 3), **extra)
        self.manifest.write()

    async def _idle(self) -> None:
        m = self.manifest
        assert m is not None
        with structlog.contextvars.bound_contextvars(phase="idle"):
            sink = await self._window("idle", self.plan.idle.seconds)
            self.idle_temps = thermal.read_zones(self.root, self.plan.cooldown.zones)
            integ = sink.integrator
            if integ.mean_uw is None:
                raise SensorError("no valid sample of the total rail during the idle phase "
                                  f"({integ.invalid} invalid): the sensor cannot be read")
            path = self.result_dir / IDLE_JSON
            if path.exists():  # re-measured on resume: keep the earlier baseline beside it
                path.rename(self._aside(path))
            atomic_write_json(path, {"timestamp": wall_text(sink.start_ns, self.anchor, STAMP_FMT),
                                     "avg_idle_power": integ.mean_uw})
            health = self._health(sink)
            m.data["idle"] = {"avg_power_uw": integ.mean_uw, "samples": integ.count,
                              "start_ns": sink.start_ns, "end_ns": sink.end_ns,
                              "temperatures_c": self.idle_temps,
                              "coverage": health["coverage"], "flagged": health["flagged"]}
            m.forget(IDLE_JSON)
            m.checksum([path])
            self._phase_done("idle", sink)

    async def _cooldown(self, after: str) -> None:
        cd = self.plan.cooldown
        with structlog.contextvars.bound_contextvars(phase="cooldown"):
            if cd.mode == "thermal" and self.idle_temps:
                sink = await self._thermal_cooldown()
            else:
                if cd.mode == "thermal":
                    log.warning("cooldown_fixed", reason="no readable thermal zone; fixed time")
                sink = await self._window("cooldown", cd.seconds)
            self._phase_done("cooldown", sink, after=after)

    async def _thermal_cooldown(self) -> WindowSink:
        cd = self.plan.cooldown
        start = monotonic_ns()
        sink = self._window_sink(start)
        self.sinks.append(sink)
        log.info("phase_started", phase="cooldown", mode="thermal", margin_c=cd.margin_c,
                 max_seconds=cd.max_seconds, baseline_c=self.idle_temps)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with self.sampling.in_phase("cooldown"):
                await asyncio.sleep(cd.seconds)  # the minimum
                while True:
                    hot = thermal.above_baseline(thermal.read_zones(self.root, cd.zones),
                                                 self.idle_temps, cd.margin_c)
                    if not hot:
                        break
                    if loop.time() - t0 >= cd.max_seconds:
                        log.warning("cooldown_capped", still_above_c=hot,
                                    max_seconds=cd.max_seconds)
                        break
                    await asyncio.sleep(min(2.0, max(0.0, t0 + cd.max_seconds - loop.time())))
        finally:
            sink.end_ns = monotonic_ns()
            await self.sampling.drain_now()
            self.sinks.remove(sink)
        return sink

    @staticmethod
    def _aside(path: Path) -> Path:
        return first_free(lambda k: path.with_name(f"{path.name}.attempt-{k}"))

    def _model_gaps(self, phases: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        """The sampler gaps over the limit inside the worker's timing and profiling windows."""
        found = []
        for name, (a, b) in _windows(phases).items():
            if name not in GAP_CHECKED_PHASES:
                continue
            for g in self.sampling.watch.within(a, b, monotonic_ns()):
                found.append({**g.to_dict(), "worker_phase": name})
        return found

    async def _model(self, mp: ModelPlan, index: int, attempt: int = 0) -> bool:
        m = self.manifest
        assert m is not None
        label = mp.label
        mdir = self.result_dir / label
        with structlog.contextvars.bound_contextvars(model=label, phase="benchmark"):
            if mdir.exists():  # a resumed run re-runs this model: keep the earlier attempt
                aside = self._aside(mdir)
                mdir.rename(aside)
                m.forget(label)
                log.info("model_previous_attempt_kept", moved_to=aside.name)
            mdir.mkdir()
            cfg = WorkerConfig(
                model=mp.name, label=label, result_dir=str(self.result_dir), backend=mp.backend,
                device=mp.device, dtype=mp.dtype, input_shape=tuple(mp.input_shape),
                warmup=mp.warmup, runs=mp.runs, profile_runs=mp.profile_runs,
                optimization_level=mp.optimization_level, min_block_size=mp.min_block_size,
                anchor=self.anchor.to_dict(),
                layer_energy=mp.layer_energy, layer_energy_precision=mp.layer_energy_precision,
                layer_energy_max_seconds=mp.layer_energy_max_seconds,
                truth_bus=_truth_bus(self.sensor),
            )
            cfg_path = cfg.write(mdir / "jetpower_worker_config.json")
            rate = self.plan.sampler.rate_hz
            if mp.rate_hz != rate:
                self.sampling.request_rate(mp.rate_hz)
            rec = self.sampling.recorder
            segment = (rec, rec.csv_bytes) if rec else None
            start = monotonic_ns()
            plog = PowerLogSink(mdir / f"{label}_power_log.log", self.anchor, start)
            window = self._window_sink(start)
            self.sinks.extend((plog, window))
            entry = m.model(label)
            entry.update(status="running", start_ns=start, index=index)
            m.write()
            log.info("model_started", index=index + 1, of=len(self.plan.models),
                     backend=mp.backend, dtype=mp.dtype, runs=mp.runs, rate_hz=mp.rate_hz)
            try:
                with self.sampling.in_phase("benchmark", label):
                    outcome = await run_worker(cfg_path, timeout=mp.timeout_seconds,
                                               ready_timeout=min(WORKER_READY_TIMEOUT_S,
                                                                 mp.timeout_seconds))
            finally:
                end = monotonic_ns()
                plog.end_ns = window.end_ns = end
                await asyncio.shield(self._end_model(plog, window, rate, mp.rate_hz))
            files = sorted(p for p in mdir.rglob("*") if p.is_file())
            m.checksum(files)
            integ = window.integrator
            entry.update(end_ns=end, samples=integ.count, power_log_lines=plog.lines,
                         exit_code=outcome.exit_code, phases=outcome.phases)
            energy = await self._phase_energies(segment, {"benchmark": (start, end),
                                                          **_windows(outcome.phases)})
            if energy:
                entry["energy"] = energy
                timing = energy.get("timing", {})
                if "counter_energy_uj" in timing:
                    log.info("timing_energy", trapezoid_uj=timing["energy_uj"],
                             counter_uj=timing["counter_energy_uj"],
                             trapezoid_vs_counter=timing.get("trapezoid_vs_counter"))
            gaps = self._model_gaps(outcome.phases)
            entry["sampler_gaps"] = gaps
            self._phase_done("benchmark", window, label, rate_hz=mp.rate_hz,
                             status="done" if outcome.ok and not gaps else "failed")
            if outcome.ok and gaps:
                worst = max(gaps, key=lambda g: g["seconds"])
                reason = (f"the sampler was silent for {worst['seconds']:.3f} s during the "
                          f"{worst['worker_phase']} window (limit "
                          f"{self.plan.sampler.gap_limit_s(mp.rate_hz):g} s): not measured")
                if self.plan.sampler.on_gap == "remeasure" and attempt == 0:
                    entry.update(status="remeasure", reason=reason)
                    m.write()
                    log.warning("model_remeasured", reason=reason, gaps=len(gaps))
                    return await self._model(mp, index, attempt=1)
                entry.update(status="failed", reason=reason, error_type="SamplerGap")
                m.write()
                log.error("model_failed", reason=reason, gaps=len(gaps), attempt=attempt + 1)
                return False
            if outcome.ok:
                entry.update(status="done", reason=None, alignment=_alignment(mdir))
                m.write()
                log.info("model_finished", samples=integ.count, avg_power_uw=integ.mean_uw,
                         seconds=round((end - start) / 1e9, 3))
                return True
            written = failure_file_reason(mdir)
            reason = outcome.reason or (written or {}).get("message") or "unknown failure"
            entry.update(status="failed", reason=reason, error_type=outcome.error_type)
            m.write()
            log.error("model_failed", reason=reason, exit_code=outcome.exit_code)
            return False

    async def _phase_energies(self, segment: tuple[Recorder, int] | None,
                              windows: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """Per window of the model: samples, mean power, trapezoid and counter energy."""
        rec = self.sampling.recorder
        if segment is None or rec is None or segment[0] is not rec or rec.samples_csv is None:
            return {}  # the sampler was restarted during the model: its samples span two files
        sensor = self.decoder.sensor
        rails = [r for r in sensor.rails if r.label in sensor.total.rails]
        with_counter = [r for r in rails if r.energy is not None]
        counters = [r.label for r in with_counter] if len(with_counter) == len(rails) else []
        wraps = {r.label: r.energy.wrap for r in with_counter if r.energy is not None}
        await rec.flush()
        try:
            series = await asyncio.to_thread(read_segment, rec.samples_csv, segment[1], counters)
        except (OSError, ValueError) as e:
            log.warning("phase_energy_unavailable", reason=str(e))
            return {}
        figures = window_energies(series, windows, wraps, self.decoder.integration_rule)
        return {"method": WINDOW_METHOD, **figures}

    async def _end_model(self, plog: PowerLogSink, window: WindowSink, rate: float,
                         model_rate: float) -> None:
        await self.sampling.drain_now()
        for s in (plog, window):
            with contextlib.suppress(ValueError):
                self.sinks.remove(s)
        await plog.close()
        if model_rate != rate:
            self.sampling.request_rate(rate)

    # -- the end ----------------------------------------------------------------------------

    async def _finish(self, m: Manifest) -> None:
        if m.data.get("status") == "running":
            m.data["status"] = "complete"
        for entry in m.data["models"].values():
            if entry.get("status") == "running":
                entry["status"] = "interrupted" if m.data["status"] == "interrupted" else "failed"
                entry.setdefault("reason", m.data.get("reason") or "run stopped")
        for name in self._sampling.samples_files if self._sampling else ():
            p = self.result_dir / name
            if p.exists():
                m.forget(name)
                m.checksum([p])
        statuses = [e.get("status") for e in m.data["models"].values()]
        m.data["summary"] = {s: statuses.count(s) for s in sorted({str(x) for x in statuses})}
        try:
            m.write()
        except StorageError:  # a full disk: the reserve makes room for the manifest's last words
            if self._lock is None or not self._lock.free_reserve():
                raise
            m.write()
        event = "run_finished" if m.data["status"] != "interrupted" else "run_interrupted"
        log.info(event, status=m.data["status"], models=m.data["summary"],
                 sampler=m.data.get("sampler_totals"), result_dir=str(self.result_dir))

    async def _upload(self) -> int:
        from jetpower.upload import upload_result

        u = self.plan.upload
        try:
            await asyncio.to_thread(upload_result, self.result_dir, str(u.repo), branch=u.branch,
                                    remote_path=u.remote_path or None, retries=u.retries)
        except UploadError as e:
            log.error("upload_failed", reason=str(e))
            return EXIT_UPLOAD
        log.info("upload_finished", repo=u.repo, branch=u.branch)
        return EXIT_OK


def _windows(phases: dict[str, dict[str, int]]) -> dict[str, tuple[int, int]]:
    """The worker's phases that have both ends, as (start_ns, end_ns)."""
    return {name: (int(p["start_ns"]), int(p["end_ns"])) for name, p in phases.items()
            if p.get("start_ns") and p.get("end_ns")}


PROBE_SECONDS = 1.0
#: the worker windows whose samples a model's figures rest on: a gap there fails the model
GAP_CHECKED_PHASES = ("timing", "profiling")


def _truth_bus(sensor: SensorSet | None) -> str | None:
    """The simulated sensor's truth bus for a worker's config (None on every real source)."""
    if sensor is None or not sensor.simulated or sensor.truth_bus is None:
        return None
    return str(sensor.truth_bus)


def _time_method(sensor: SensorSet) -> dict[str, Any]:
    """How power samples and layer stamps share one time base, and how far apart they may be."""
    periods = [d.get("update_interval") for d in sensor.devices if d.get("update_interval")]
    return {
        "clock": "CLOCK_MONOTONIC ns in the sampler, the supervisor and the workers",
        "wall_text": "derived from monotonic stamps through the run's anchor pair (manifest "
                     "'anchor'), by one function; anchor error is its 'error_ns'",
        "sample_stamp": "mid-point of the read pass (the pass takes microseconds)",
        "sample_age": (f"a value is the chip's latest conversion: up to update_interval "
                       f"({', '.join(f'{p} ms' for p in periods)}) old" if periods else
                       "a value is the source's latest: see 'probe' for how often it changes"),
        "layer_stamp": "end of the layer's reconstructed window: inference start + the latencies "
                       "of the layers before it; per model method and expected error in "
                       "models.<name>.alignment",
    }


def _alignment(model_dir: Path) -> dict[str, Any] | None:
    """The worker's layer-alignment method and expected error, from its metadata."""
    try:
        meta = json.loads((model_dir / "jetpower_worker.json").read_text())
    except (OSError, ValueError):
        return None
    found = meta.get("alignment") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else None


def _unwrap(error: Exception) -> Exception:
    """The first jetpower error inside (possibly nested) exception groups, else ``error``."""
    inner = getattr(error, "exceptions", None)
    if not inner:
        return error
    for e in inner:
        found = _unwrap(e)
        if isinstance(found, JetpowerError):
            return found
    return storage_error(error) or error
