"""Read a result directory, in jetpower's layout or the original scripts' layout, into arrays.

Every time in a :class:`ResultData` is float seconds since ``origin_ns`` on one clock:

- ``"monotonic"`` when ``jetpower_manifest.json`` gives an anchor: samples, phase windows and
  worker phase markers are already CLOCK_MONOTONIC ns; wall-clock text (layer window ends, power
  log lines) is brought onto it through the anchor (realtime = anchor.realtime_ns + (mono -
  anchor.monotonic_ns), local time as :func:`jetpower.timebase.wall_datetime` writes it).
- ``"wall"`` otherwise: POSIX time of the local wall-clock text of the original files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from jetpower.report._errors import ResultError
from jetpower.report._parse import (
    read_layer_latency,
    read_power_log,
    read_samples_csv,
    stamps_to_posix_ns,
)
from jetpower.timebase import STAMP_FMT, Anchor, parse_wall_text

MANIFEST = "jetpower_manifest.json"
SAMPLES = "jetpower_samples.csv"
WORKER = "jetpower_worker.json"
FAILURE = "jetpower_failure.json"
IDLE = "idling_power.json"
KNOWN_VERSIONS = {"jetpower.manifest": 1, "jetpower.worker-result": 1, "jetpower.worker-failure": 1}

Clock = Literal["monotonic", "wall"]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Window:
    """A closed time interval [start, end] in report seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Phase:
    """A phase of the campaign: ``idle``, ``cooldown`` or ``benchmark`` (of ``model``)."""

    name: str
    model: str | None
    window: Window


@dataclass(frozen=True)
class LayerRuns:
    """Every profiled window of every layer, flat: layer ``i`` owns ``offsets[i]:offsets[i+1]``."""

    names: list[str]
    types: list[str | None]
    offsets: npt.NDArray[np.int64]
    ms: F64
    end: F64

    def windows(self, i: int) -> tuple[F64, F64]:
        """(start, end) arrays of layer ``i``'s windows, in run order."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        end = self.end[a:b]
        return end - self.ms[a:b] * 1e-3, end


@dataclass
class ModelData:
    """One model's files, on the report clock."""

    name: str
    status: str = "done"
    reason: str | None = None
    summary: dict[str, Any] | None = None
    latencies_s: F64 | None = None
    batch: int = 1
    benchmark: Window | None = None
    timing: Window | None = None
    #: "worker" (phase markers), "estimated" or "benchmark" (whole benchmark window)
    timing_source: str = "none"
    layers: LayerRuns | None = None
    worker: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ResultData:
    """A whole result directory, loaded."""

    path: Path
    clock: Clock
    origin_ns: int
    simulated: bool
    manifest: dict[str, Any] | None
    anchor: Anchor | None
    #: power samples of the whole campaign (or of the model logs only): seconds, uW; sorted
    t: F64
    p_uw: F64
    trace_source: str
    phases: list[Phase]
    idle_file_uw: float | None
    idle_manifest_uw: float | None
    idle_window: Window | None
    models: list[ModelData]
    notes: list[str] = field(default_factory=list)

    @property
    def integration_rule(self) -> str:
        """"hold" when the total's power came from energy counters alone (the manifest's rails
        say so), else "trapezoid": the rule of :mod:`jetpower.acquire.energy`."""
        sensor = (self.manifest or {}).get("sensor") or {}
        total = sensor.get("total") or {}
        names = total.get("sum") or ([total["rail"]] if total.get("rail") else [])
        rails = [r for r in sensor.get("rails") or []
                 if isinstance(r, dict) and r.get("label") in names]
        if rails and all(r.get("derivation") == "counter" for r in rails):
            return "hold"
        return "trapezoid"


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ResultError(f"cannot read {path}: {e.strerror}") from e
    except ValueError as e:
        raise ResultError(f"{path}: invalid JSON: {e}") from e


def _versioned(path: Path, fmt: str) -> dict[str, Any]:
    d = _read_json(path)
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise ResultError(f"{path}: not a {fmt!r} file (format={d.get('format')!r})")
    if d.get("version") != KNOWN_VERSIONS[fmt]:
        raise ResultError(
            f"{path}: {fmt} version {d.get('version')!r} unknown "
            f"(this jetpower reads version {KNOWN_VERSIONS[fmt]})"
        )
    return d


#: a directory (or file) an earlier attempt was moved to by ``--resume``: ``<name>.attempt-<k>``
_ASIDE = re.compile(r"\.attempt-\d+$")


def _is_model_dir(d: Path) -> bool:
    n = d.name
    return any(
        (d / f).exists()
        for f in (f"{n}_power_log.log", f"{n}_tensorrt.json", WORKER, FAILURE, "trt_profiling")
    )


class _Clock:
    def __init__(self, clock: Clock, origin_ns: int, anchor: Anchor | None) -> None:
        self.clock, self.origin_ns, self.anchor = clock, origin_ns, anchor

    def from_posix(self, ns: npt.NDArray[np.int64]) -> F64:
        if self.anchor is not None:
            ns = ns - (self.anchor.realtime_ns - self.anchor.monotonic_ns)
        return (ns - self.origin_ns).astype(np.float64) * 1e-9

    def from_mono(self, ns: npt.NDArray[np.int64] | int) -> F64:
        return (np.asarray(ns, dtype=np.int64) - self.origin_ns).astype(np.float64) * 1e-9

    def mono_window(self, d: Any) -> Window | None:
        try:
            a, b = int(d["start_ns"]), int(d["end_ns"])
        except (TypeError, KeyError, ValueError):
            return None
        return Window(float(self.from_mono(a)), float(self.from_mono(b)))


def _load_layers(mdir: Path, clock: _Clock, notes: list[str]) -> LayerRuns | None:
    prof = mdir / "trt_profiling"
    lat = prof / "trt_layer_latency.json"
    if not lat.exists():
        return None
    types: dict[str, str] = {}
    info = prof / "trt_engine_info.json"
    if info.exists():
        d = _read_json(info)
        for layer in d.get("Layers", []) if isinstance(d, dict) else []:
            if isinstance(layer, dict) and "Name" in layer:
                types[str(layer["Name"])] = str(layer.get("LayerType", ""))
    names: list[str] = []
    ms_parts: list[F64] = []
    end_parts: list[F64] = []
    for name, ms, end_ns in read_layer_latency(lat):
        names.append(name)
        ms_parts.append(ms)
        end_parts.append(clock.from_posix(end_ns))
    if types and (unknown := [n for n in names if n not in types]):
        notes.append(f"{len(unknown)} profiled layers are not in trt_engine_info.json")
    counts = np.array([m.size for m in ms_parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    empty = np.empty(0)
    return LayerRuns(
        names,
        [types.get(n) for n in names],
        offsets,
        np.concatenate(ms_parts) if ms_parts else empty,
        np.concatenate(end_parts) if end_parts else empty,
    )


def _load_model(
    mdir: Path, clock: _Clock, manifest_entry: dict[str, Any] | None, logs: list[tuple[F64, F64]]
) -> ModelData:
    m = ModelData(mdir.name)
    if manifest_entry:
        m.status = str(manifest_entry.get("status", "done"))
        m.reason = manifest_entry.get("reason")
        if clock.clock == "monotonic":
            m.benchmark = clock.mono_window(manifest_entry)
    fail = mdir / FAILURE
    if fail.exists():
        f = _versioned(fail, "jetpower.worker-failure")
        m.status = "failed"
        m.reason = m.reason or str(f.get("message") or f.get("error_type") or "worker failed")
    summ = mdir / f"{m.name}_tensorrt.json"
    if summ.exists():
        s = _read_json(summ)
        if not isinstance(s, dict) or not isinstance(s.get("latencies"), list):
            raise ResultError(f"{summ}: want an object with a 'latencies' list")
        m.summary = s
        try:
            m.latencies_s = np.array(s["latencies"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ResultError(f"{summ}: latencies must be numbers") from e
        shape = (s.get("config") or {}).get("input_shape")
        if isinstance(shape, list) and shape and isinstance(shape[0], int):
            m.batch = shape[0]
    log = mdir / f"{m.name}_power_log.log"
    if log.exists():
        t_ns, p = read_power_log(log)
        if t_ns.size:
            t = clock.from_posix(t_ns)
            logs.append((t, p))
            if m.benchmark is None:
                m.benchmark = Window(float(t.min()), float(t.max()))
    m.layers = _load_layers(mdir, clock, m.notes)
    wpath = mdir / WORKER
    if wpath.exists():
        m.worker = _versioned(wpath, "jetpower.worker-result")
        if clock.clock == "monotonic":
            tw = clock.mono_window((m.worker.get("phases") or {}).get("timing"))
            if tw is not None:
                m.timing, m.timing_source = tw, "worker"
        else:
            m.notes.append(f"{WORKER} ignored: no manifest anchor to put its monotonic stamps")
    if m.timing is None:
        _estimate_timing(m)
    return m


def _estimate_timing(m: ModelData) -> None:
    """Without worker phase markers: the timing pass is taken to end where profiling starts."""
    dur = None
    if m.summary is not None:
        tt = m.summary.get("total_time")
        dur = float(tt) if isinstance(tt, (int, float)) and tt > 0 else None
        if dur is None and m.latencies_s is not None and m.latencies_s.size:
            dur = float(m.latencies_s.sum())
    if m.layers is not None and m.layers.ms.size and dur is not None:
        prof_start = float((m.layers.end - m.layers.ms * 1e-3).min())
        w = Window(prof_start - dur, prof_start)
        if m.benchmark is None or w.start >= m.benchmark.start:
            m.timing, m.timing_source = w, "estimated"
            m.notes.append(
                "timing-pass window ESTIMATED (no worker phase markers): the total_time "
                f"({dur:.3f} s) immediately before the first profiled layer window"
            )
            return
    if m.benchmark is not None:
        m.timing, m.timing_source = m.benchmark, "benchmark"
        m.notes.append(
            "timing-pass window unknown: power figures rest on the WHOLE benchmark window "
            "(compile, warm-up, timing and profiling), not on the timing pass alone"
        )


def load_result(path: str | Path) -> ResultData:
    """Load a result directory (jetpower's layout, or the original scripts' layout alone)."""
    root = Path(path)
    if not root.is_dir():
        raise ResultError(f"{root}: not a directory")
    notes: list[str] = []
    manifest = None
    anchor = None
    if (root / MANIFEST).exists():
        manifest = _versioned(root / MANIFEST, "jetpower.manifest")
        try:
            anchor = Anchor.from_dict(manifest["anchor"])
        except (KeyError, TypeError, ValueError) as e:
            raise ResultError(f"{root / MANIFEST}: no usable 'anchor'") from e
    idle_file = None
    idle_stamp_ns = None
    if (root / IDLE).exists():
        d = _read_json(root / IDLE)
        if isinstance(d, dict) and isinstance(d.get("avg_idle_power"), (int, float)):
            idle_file = float(d["avg_idle_power"])
        try:
            idle_stamp_ns = round(parse_wall_text(str(d["timestamp"]), STAMP_FMT)) * 10**9
        except (KeyError, TypeError, ValueError):
            notes.append(f"{IDLE}: timestamp unreadable")
    else:
        notes.append(f"{IDLE} missing")

    entries = (manifest or {}).get("models") or {}
    dirs = {d.name: d for d in root.iterdir() if d.is_dir() and _is_model_dir(d)
            and not _ASIDE.search(d.name)}
    aside = sorted(d.name for d in root.iterdir() if d.is_dir() and _ASIDE.search(d.name))
    if aside:
        notes.append(f"earlier attempts set aside by --resume, not reported: {', '.join(aside)}")
    if manifest is None and idle_file is None and not dirs:
        raise ResultError(f"{root}: not a result directory (no {IDLE}, {MANIFEST} or model dirs)")
    if anchor is not None:
        clock = _Clock("monotonic", anchor.monotonic_ns, anchor)
    else:
        origin = idle_stamp_ns if idle_stamp_ns is not None else _first_log_stamp(dirs.values())
        clock = _Clock("wall", origin, None)
    order = [n for n in entries if n in dirs] + sorted(n for n in dirs if n not in entries)
    logs: list[tuple[F64, F64]] = []
    models = [_load_model(dirs[n], clock, entries.get(n), logs) for n in order]
    for n, entry in entries.items():
        if n not in dirs:
            reason = entry.get("reason") or "no result directory"
            models.append(ModelData(n, str(entry.get("status", "missing")), reason))

    phases: list[Phase] = []
    idle_window = None
    # a resumed or restarted run has one samples file per sampler session, listed in the manifest
    names = [str(n) for n in ((manifest or {}).get("sampler") or {}).get("samples_files") or []]
    files = [root / n for n in dict.fromkeys([SAMPLES, *names]) if (root / n).exists()]
    if files:
        parts = [read_samples_csv(f) for f in files]
        for f, (_, _, torn) in zip(files, parts):
            if torn:
                notes.append(f"{f.name}: its last row was cut short (written when the run "
                             "stopped) and is left out")
        t_ns = np.concatenate([a for a, _, _ in parts])
        p = np.concatenate([b for _, b, _ in parts])
        order_t = np.argsort(t_ns, kind="stable")
        t_ns, p = t_ns[order_t], p[order_t]
        if anchor is None:
            notes.append(f"{SAMPLES} ignored: no manifest anchor")
            t, p = _concat(logs)
            source = "model power logs"
        else:
            t = clock.from_mono(t_ns)
            source = ", ".join(f.name for f in files)
    else:
        t, p = _concat(logs)
        source = "model power logs (no campaign-wide samples on disk)"
    good = np.isfinite(p)
    if not good.all():
        notes.append(f"{int((~good).sum())} invalid power samples dropped")
        t, p = t[good], p[good]
    if t.size > 1 and bool((np.diff(t) < 0).any()):
        o = np.argsort(t, kind="stable")
        t, p = t[o], p[o]

    if manifest is not None:
        for ph in manifest.get("phases") or []:
            w = clock.mono_window(ph)
            if w is not None:
                phases.append(Phase(str(ph.get("name")), ph.get("model"), w))
                if ph.get("name") == "idle" and idle_window is None:
                    idle_window = w
    else:
        phases = [Phase("benchmark", m.name, m.benchmark) for m in models if m.benchmark]
    idle_man = ((manifest or {}).get("idle") or {}).get("avg_power_uw")
    return ResultData(
        path=root,
        clock=clock.clock,
        origin_ns=clock.origin_ns,
        simulated=bool((manifest or {}).get("simulated", False)),
        manifest=manifest,
        anchor=anchor,
        t=t,
        p_uw=p,
        trace_source=source,
        phases=phases,
        idle_file_uw=idle_file,
        idle_manifest_uw=float(idle_man) if isinstance(idle_man, (int, float)) else None,
        idle_window=idle_window,
        models=models,
        notes=notes,
    )


def _first_log_stamp(dirs: Iterable[Path]) -> int:
    """POSIX ns of the first line of some power log: an origin that keeps float seconds exact."""
    for d in sorted(dirs):
        log = d / f"{d.name}_power_log.log"
        try:
            with log.open("rb") as f:
                head = f.read(24)
            return int(stamps_to_posix_ns(head, str(log))[0])
        except (OSError, ResultError, IndexError):
            continue
    return 0


def _concat(logs: list[tuple[F64, F64]]) -> tuple[F64, F64]:
    if not logs:
        return np.empty(0), np.empty(0)
    return np.concatenate([t for t, _ in logs]), np.concatenate([p for _, p in logs])
