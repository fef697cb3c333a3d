"""Synthetic result directories whose true answers are known, for tests and benchmarks.

Power is a known piecewise-constant function of time: idle level, then per model a compile level,
a warm-up level, the timing pass (runs made of layers, each layer at its own power, with a gap
between runs) and the profiling pass (same, with longer gaps), each phase separated by cooldown at
the idle level.  The sampler is simulated at ``rate_hz`` with timing jitter and Gaussian noise;
it reads the instantaneous power (no sensor hold), so the exact answers are:

- idle power = ``idle_w``;
- energy per inference (net) = (integral of power over the timing window - idle x its length)
  / runs, computed exactly from the segments;
- a layer's net power = its level - ``idle_w``; its energy per execution = that x its mean latency.

:func:`write_result` writes the files of either layout (``"jetpower"``: original files plus
manifest, samples CSV and worker metadata; ``"original"``: the original scripts' files only) and
returns a :class:`Truth`.  Text is formatted with numpy on fixed-width byte columns so a
30000-run x 200-layer campaign is written in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from jetpower.timebase import SAMPLE_FMT, STAMP_FMT, Anchor, wall_text

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
MONO0 = 5_000_000_000_000  # an arbitrary CLOCK_MONOTONIC origin
REAL0 = 1_709_294_400_123_456_789  # 2024-03-01, an arbitrary CLOCK_REALTIME at MONO0


@dataclass(frozen=True)
class SyntheticModel:
    """A model: per-layer mean latency (ms) and power (W), and its benchmark settings."""

    name: str
    layer_ms: tuple[float, ...]
    layer_w: tuple[float, ...]
    timed_runs: int = 1000
    profiled_runs: int = 3000
    gap_ms: tuple[float, float] = (0.2, 0.6)  # uniform gap between timed runs
    profile_gap_ms: tuple[float, float] = (0.5, 1.5)  # profiler report between profiled runs
    gap_w: float = 4.0
    jitter: float = 0.05  # relative uniform jitter of each layer's latency
    compile_s: float = 0.5
    compile_w: float = 5.0
    warmup_s: float = 0.2
    pass_gap_s: float = 0.02  # between the timing and the profiling pass
    layer_types: tuple[str, ...] = ()


@dataclass
class ModelTruth:
    """The exact answers for one model."""

    runs: int
    timing_ns: tuple[int, int]
    mean_gross_w: float
    energy_per_inference_j: float
    latency_mean_s: float
    layer_net_w: dict[str, float]
    layer_energy_j: dict[str, float]
    layer_latency_s: dict[str, float]


@dataclass
class Truth:
    """The exact answers for a synthetic result directory."""

    idle_w: float
    models: dict[str, ModelTruth] = field(default_factory=dict)
    anchor: Anchor = field(default_factory=lambda: Anchor(REAL0, MONO0, 0))


def _digits(v: I64, width: int) -> npt.NDArray[np.uint8]:
    """ASCII digits of non-negative ints, zero-padded to ``width``: shape (n, width)."""
    p = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((v[:, None] // p) % 10 + 48).astype(np.uint8)


def int_text(v: I64, width: int) -> npt.NDArray[np.uint8]:
    """Non-negative ints right-aligned in ``width`` columns, padded with spaces."""
    d = _digits(v, width)
    lead = np.cumsum(d != 48, axis=1) == 0
    lead[:, -1] = False
    d[lead] = 32
    return d


def stamp_bytes(mono_ns: I64, anchor: Anchor) -> npt.NDArray[np.uint8]:
    """``%Y%m%d-%H:%M:%S.%f`` text of monotonic stamps, shape (n, 24), via timebase.wall_text."""
    rt = mono_ns + (anchor.realtime_ns - anchor.monotonic_ns)
    sec, ns = np.divmod(rt, 10**9)
    secs, inv = np.unique(sec, return_inverse=True)
    head = np.frombuffer(
        "".join(
            wall_text(int(s) * 10**9 - anchor.realtime_ns + anchor.monotonic_ns, anchor,
                      SAMPLE_FMT[:-3])
            for s in secs
        ).encode(),
        dtype=np.uint8,
    ).reshape(-1, 17)
    dot = np.full((rt.size, 1), ord("."), dtype=np.uint8)
    return np.hstack([head[inv.reshape(-1)], dot, _digits(ns // 1000, 6)])


def fixed_float(x: F64, int_width: int = 5, dec: int = 6) -> npt.NDArray[np.uint8]:
    """Non-negative floats as fixed-width text, integer part padded with spaces (valid JSON)."""
    v = np.rint(x * 10**dec).astype(np.int64)
    ip = int_text(v // 10**dec, int_width)
    dot = np.full((v.size, 1), ord("."), dtype=np.uint8)
    return np.hstack([ip, dot, _digits(v % 10**dec, dec)])


def _lines(cols: list[npt.NDArray[np.uint8]]) -> bytes:
    """Join fixed-width byte columns with commas, one line per row."""
    n = cols[0].shape[0]
    comma = np.full((n, 1), ord(","), dtype=np.uint8)
    nl = np.full((n, 1), ord("\n"), dtype=np.uint8)
    parts: list[npt.NDArray[np.uint8]] = []
    for c in cols:
        parts += [c, comma]
    parts[-1] = nl
    return np.hstack(parts).tobytes()


class _Timeline:
    """Piecewise-constant power: segment durations (ns) and levels (W), appended in order."""

    def __init__(self, t0: int) -> None:
        self.t0 = t0
        self.now = t0
        self.durs: list[I64] = []
        self.levels: list[F64] = []

    def add(self, dur_ns: npt.ArrayLike, level_w: npt.ArrayLike) -> I64:
        """Append segments; return their end stamps."""
        d0 = np.asarray(dur_ns, dtype=np.int64)
        lv = np.broadcast_to(np.asarray(level_w, dtype=np.float64), d0.shape).reshape(-1)
        d = d0.reshape(-1)
        self.durs.append(d)
        self.levels.append(np.array(lv))
        ends = self.now + np.cumsum(d)
        self.now = int(ends[-1])
        return ends

    def sample(self, rate_hz: float, noise_w: float, rng: np.random.Generator) -> tuple[I64, F64]:
        period = 1e9 / rate_hz
        n = int((self.now - self.t0) / period)
        jit = rng.uniform(-0.05, 0.05, n) * period
        t = (self.t0 + (np.arange(n) + 0.5) * period + jit).astype(np.int64)
        ends = self.t0 + np.cumsum(np.concatenate(self.durs))
        lv = np.concatenate(self.levels)
        idx = np.minimum(np.searchsorted(ends, t, "right"), lv.size - 1)
        return t, lv[idx] + rng.normal(0.0, noise_w, n)


def _runs(m: SyntheticModel, runs: int, gap_ms: tuple[float, float], rng: np.random.Generator
          ) -> tuple[I64, F64]:
    """(durations ns, levels W), shape (runs, layers + 1): the layers, then the gap."""
    ms = np.asarray(m.layer_ms)
    lay = ms * (1 + m.jitter * rng.uniform(-1, 1, (runs, ms.size)))
    gap = rng.uniform(*gap_ms, (runs, 1))
    dur = np.rint(np.hstack([lay, gap]) * 1e6).astype(np.int64)
    lv = np.broadcast_to(np.array([*m.layer_w, m.gap_w]), dur.shape)
    return dur, np.array(lv)


def _layer_json(names: list[str], ms: F64, end_ns: I64, anchor: Anchor) -> bytes:
    """``trt_layer_latency.json`` for (runs, layers) arrays, fixed-width rows."""
    out = [b"{"]
    for j, name in enumerate(names):
        n = ms.shape[0]
        row = np.hstack([
            np.full((n, 1), ord("["), np.uint8), fixed_float(ms[:, j]),
            np.frombuffer(b', "', np.uint8)[None, :].repeat(n, 0),
            stamp_bytes(end_ns[:, j], anchor),
            np.frombuffer(b'"], ', np.uint8)[None, :].repeat(n, 0),
        ])  # fmt: skip
        sep = b"" if j == 0 else b", "
        out.append(sep + json.dumps(name).encode() + b": [" + row.tobytes()[:-2] + b"]")
    out.append(b"}")
    return b"".join(out)


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def write_result(
    root: Path,
    models: list[SyntheticModel],
    *,
    layout: str = "jetpower",
    idle_w: float = 2.0,
    idle_s: float = 2.0,
    cooldown_s: float = 0.5,
    rate_hz: float = 1000.0,
    noise_w: float = 0.05,
    simulated: bool = True,
    failed: tuple[str, ...] = (),
    seed: int = 0,
) -> Truth:
    """Write a complete synthetic result directory at ``root``; return its exact answers.

    ``layout`` is ``"jetpower"`` (all files) or ``"original"`` (the original scripts' files only).
    Models named in ``failed`` get a manifest entry and a failure file but no results.
    """
    if layout not in ("jetpower", "original"):
        raise ValueError(f"layout {layout!r}")
    rng = np.random.default_rng(seed)
    anchor = Anchor(REAL0, MONO0, 0)
    root.mkdir(parents=True, exist_ok=True)
    tl = _Timeline(MONO0 + 10_000_000)
    truth = Truth(idle_w)
    phases: list[dict[str, object]] = []

    def phase(name: str, model: str | None, a: int, b: int) -> None:
        phases.append({"name": name, "model": model, "start_ns": a, "end_ns": b})

    a = tl.now
    tl.add(int(idle_s * 1e9), idle_w)
    phase("idle", None, a, tl.now)
    a = tl.now
    tl.add(int(cooldown_s * 1e9), idle_w)
    phase("cooldown", None, a, tl.now)
    info: dict[str, dict[str, object]] = {}
    for m in models:
        L = len(m.layer_ms)
        bench0 = tl.now
        tl.add(int(m.compile_s * 1e9), m.compile_w)
        c_end = tl.now
        tl.add(int(m.warmup_s * 1e9), m.layer_w[0])
        w_end = tl.now
        dur, lv = _runs(m, m.timed_runs, m.gap_ms, rng)
        t0 = tl.now
        tl.add(dur, lv)
        t1 = tl.now
        energy = float((dur * lv).sum()) * 1e-9
        tl.add(int(m.pass_gap_s * 1e9), m.gap_w)
        pdur, plv = _runs(m, m.profiled_runs, m.profile_gap_ms, rng)
        p0 = tl.now
        ends = tl.add(pdur, plv).reshape(pdur.shape)[:, :L]
        p1 = tl.now
        tl.add(20_000_000, m.gap_w)
        bench1 = tl.now
        phase("benchmark", m.name, bench0, bench1)
        a = tl.now
        tl.add(int(cooldown_s * 1e9), idle_w)
        phase("cooldown", None, a, tl.now)
        lat_s = dur[:, :L].sum(axis=1) * 1e-9
        names = [f"{m.name}/layer_{j:03d}" for j in range(L)]
        mean_ms = pdur[:, :L].mean(axis=0) * 1e-6
        truth.models[m.name] = ModelTruth(
            runs=m.timed_runs,
            timing_ns=(t0, t1),
            mean_gross_w=energy / ((t1 - t0) * 1e-9),
            energy_per_inference_j=(energy - idle_w * (t1 - t0) * 1e-9) / m.timed_runs,
            latency_mean_s=float(lat_s.mean()),
            layer_net_w={n: m.layer_w[j] - idle_w for j, n in enumerate(names)},
            layer_energy_j={
                n: (m.layer_w[j] - idle_w) * mean_ms[j] * 1e-3 for j, n in enumerate(names)
            },
            layer_latency_s={n: mean_ms[j] * 1e-3 for j, n in enumerate(names)},
        )
        info[m.name] = {
            "names": names, "bench": (bench0, bench1), "lat_s": lat_s, "total": (t1 - t0) * 1e-9,
            "phases": {"compile": (bench0, c_end), "warmup": (c_end, w_end), "timing": (t0, t1),
                       "profiling": (p0, p1)},
            "ms": pdur[:, :L] * 1e-6, "ends": ends,
        }  # fmt: skip

    t_ns, p_w = tl.sample(rate_hz, noise_w, rng)
    p_uw = p_w * 1e6
    mv = np.full(t_ns.size, 5080.0)
    idle_lo, idle_hi = np.searchsorted(t_ns, [phases[0]["start_ns"], phases[0]["end_ns"]])
    idle_uw = float(p_uw[idle_lo:idle_hi].mean())
    idle_end = int(phases[0]["end_ns"])  # type: ignore[call-overload]
    _write_json(root / "idling_power.json",
                {"timestamp": wall_text(idle_end, anchor, STAMP_FMT), "avg_idle_power": idle_uw})
    for m in models:
        d = info[m.name]
        mdir = root / m.name
        (mdir / "trt_profiling").mkdir(parents=True, exist_ok=True)
        b0, b1 = d["bench"]  # type: ignore[misc]
        lo, hi = np.searchsorted(t_ns, [b0, b1])
        ma = np.rint(p_uw[lo:hi] / mv[lo:hi] * 1000).astype(np.int64)  # mA x 1000
        log = _lines([stamp_bytes(t_ns[lo:hi], anchor), _digits(mv[lo:hi].astype(np.int64), 4),
                      fixed_float(ma * 1e-3, 4, 3)])  # fmt: skip
        (mdir / f"{m.name}_power_log.log").write_bytes(log.replace(b" ", b""))
        lat = d["lat_s"]
        avg = float(np.mean(lat))  # type: ignore[call-overload]
        summary = {
            "config": {"model": m.name, "dtype": "float16", "input_shape": [1, 3, 224, 224],
                       "warmup": 50, "runs": m.timed_runs, "optimization_level": 3,
                       "min_block_size": 5, "result_dir": str(root)},
            "total_time": d["total"],
            "timestamp": wall_text(int(d["phases"]["timing"][1]), anchor, STAMP_FMT),  # type: ignore[index]
            "latencies": [float(x) for x in lat],  # type: ignore[attr-defined]
            "avg_latency": avg, "avg_throughput": 1 / avg,
        }  # fmt: skip
        _write_json(mdir / f"{m.name}_tensorrt.json", summary)
        names: list[str] = d["names"]  # type: ignore[assignment]
        types = m.layer_types or ("Convolution",) * len(names)
        _write_json(mdir / "trt_profiling" / "trt_engine_info.json", {
            "Layers": [{"Name": n, "LayerType": ty} for n, ty in zip(names, types, strict=True)],
            "Bindings": ["input", "output"]})  # fmt: skip
        (mdir / "trt_profiling" / "trt_layer_latency.json").write_bytes(
            _layer_json(names, d["ms"], d["ends"], anchor)  # type: ignore[arg-type]
        )
        if layout == "jetpower":
            ph = {k: {"start_ns": int(a), "end_ns": int(b)} for k, (a, b) in d["phases"].items()}  # type: ignore[attr-defined]
            _write_json(mdir / "jetpower_worker.json", {
                "format": "jetpower.worker-result", "version": 1, "backend": "tensorrt",
                "device": "cuda", "phases": ph,
                "timing": {"runs": m.timed_runs, "total_time_s": d["total"]},
                "profiling": {"runs": m.profiled_runs},
                "alignment": {"method": "synthetic", "error_ns": 0}})  # fmt: skip
    for name in failed:
        (root / name).mkdir(exist_ok=True)
        if layout == "jetpower":
            _write_json(root / name / "jetpower_failure.json", {
                "format": "jetpower.worker-failure", "version": 1,
                "error_type": "RuntimeError", "message": "synthetic failure"})  # fmt: skip
    if layout == "jetpower":
        uw = int_text(np.rint(p_uw).astype(np.int64), 10)
        cells = [int_text(t_ns, 19), int_text(mv.astype(np.int64), 5),
                 fixed_float(np.rint(p_uw / mv * 1000) * 1e-3, 4, 3), uw, uw]
        head = b"# jetpower-samples v1\nt_ns,VDD_IN_mV,VDD_IN_mA,VDD_IN_uW,total_uW\n"
        (root / "jetpower_samples.csv").write_bytes(head + _lines(cells).replace(b" ", b""))
        models_m: dict[str, object] = {
            m.name: {"status": "done", "reason": None, "exit_code": 0,
                     "start_ns": int(info[m.name]["bench"][0]),  # type: ignore[index]
                     "end_ns": int(info[m.name]["bench"][1]), "samples": 0}  # type: ignore[index]
            for m in models
        }  # fmt: skip
        for name in failed:
            models_m[name] = {"status": "failed", "reason": "synthetic failure", "exit_code": 3}
        _write_json(root / "jetpower_manifest.json", {
            "format": "jetpower.manifest", "version": 1, "status": "complete",
            "simulated": simulated, "anchor": anchor.to_dict(), "plan": {}, "plan_text": "",
            # the synthetic sampler reads the instantaneous power (no conversion, no hold):
            # its rail says so, so the report picks the point estimator
            "sensor": {"source": "synthetic", "board": "synthetic", "rails": [{
                "label": "VDD_IN", "derivation": "v_x_i", "reading_models": {
                    "voltage": {"kind": "instant"}, "current": {"kind": "instant"}}}],
                       "total": {"rail": "VDD_IN"}},
            "phases": phases, "idle": {"avg_power_uw": idle_uw, "samples": int(idle_hi - idle_lo)},
            "models": models_m,
            "sampler": {"rate_hz": rate_hz, "samples": int(t_ns.size), "overruns": 0,
                        "missed_deadlines": 0, "read_errors": {}, "sched": "SCHED_OTHER", "cpu": 1},
            "checksums": {}})  # fmt: skip
    return truth


#: a small model for tests: one layer too short to get 30 samples at 1 kHz over 3000 runs
TINY = SyntheticModel(
    "tinynet",
    layer_ms=(0.4, 0.05, 0.8, 0.005, 0.3, 0.6),
    layer_w=(9.0, 6.0, 12.0, 7.0, 8.0, 10.0),
    layer_types=("Convolution", "Activation", "Convolution", "Shuffle", "Pooling", "Gemm"),
)
SMALL = SyntheticModel("smallnet", layer_ms=(1.0, 0.5, 0.25), layer_w=(11.0, 7.0, 9.0),
                       timed_runs=800, profiled_runs=2000)  # fmt: skip
