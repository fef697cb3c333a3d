"""Known-truth profiling passes read through a faithful INA3221 emulation (test code, not shipped).

The physics follows "What an INA3221 reading is" in DESIGN.md, not the estimator's assumptions:

- **Workload.**  A profiling pass of ``runs`` inferences of ``L`` layers.  Each execution of a
  layer has its own latency (per-run lognormal jitter) and its own power level (per-execution
  noise around the layer's true level); between runs a gap (profiler report) at its own power.
  Occasional *outlier runs*: one layer's execution is stretched 5-40x by a stall during which
  the board draws the gap's power (the layer itself still runs its normal time at its level).
  Before and after the pass, ``pad_s`` at the gap's power.
- **Rail.**  The board draws power P(t) (piecewise constant).  The bus voltage sags with the
  current through the source resistance: V = (V0 + sqrt(V0^2 - 4 R P)) / 2, I = P / V.
- **Chip.**  Continuous shunt+bus mode: CH1 shunt, CH1 bus, CH2 shunt, ... over the enabled
  channels, each conversion ``conv_us x averaging`` long on the chip's own oscillator, which is
  off nominal by ``osc_error`` and drifts slowly (a sinusoid of ``drift`` amplitude, period
  ``drift_period_s``: temperature).  A result register holds the mean of its input over the
  conversion's window (+ ADC noise) and changes only when the conversion ends.  Quantisation:
  shunt LSB 40 uV over a 5 mOhm shunt -> the driver's integer mA in 8 mA steps; bus LSB 8 mV.
- **Sampler.**  Passes at ``rate_hz`` by absolute deadlines with wake-up latency (and rare long
  stalls); each pass reads ``files`` sysfs files in order, each an I2C transaction of ~0.1 ms
  whose register is latched ``latch_us`` after the read starts.  A read returns the latest
  completed conversion at its latch.  In ``mode="wait"`` (JetPack 5 driver) every file read
  first polls the conversion-ready flag (set at the end of each full cycle, cleared by the
  poll), sleeping U(T/4, T) until it is set, so each read returns a fresh value; ``mode="point"``
  returns the instantaneous value at the latch (a point-like source).
- **Clocks.**  The layer windows the worker reports sit ``misalign_us`` late against the sensor
  clock (constant), plus a small per-run stamping jitter.

:func:`generate` returns a :class:`Dataset`: per read of the total rail's current file its
start/end stamps (ns), the value (mA) and the pass's bus voltage (mV); the pass mid-point stamps
("old data" keeps only those); the per-layer windows of every run as reported; and the
:class:`Truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Workload:
    """What runs: per-layer mean latency (us) and true net power (W, net of idle)."""

    layer_us: tuple[float, ...]
    layer_w: tuple[float, ...]
    runs: int = 3000
    jitter: float = 0.04  # sd of the per-execution log-latency
    level_noise: float = 0.04  # sd of the per-execution power level, relative
    outlier_p: float = 0.002  # probability that a run has one stalled layer
    outlier_factor: tuple[float, float] = (5.0, 40.0)
    gap_us: tuple[float, float] = (300.0, 1500.0)  # uniform gap between runs
    gap_w: float = 0.8  # net power during the gap
    idle_w: float = 3.1  # gross idle power of the board
    pad_s: float = 0.05


@dataclass(frozen=True)
class Chip:
    """INA3221 configuration and analog front end."""

    channels: int = 3  # enabled channels; the total rail is CH1
    conv_us: float = 1100.0  # shunt and bus conversion time
    bus_conv_us: float | None = None  # None: same as conv_us
    averaging: int = 1
    osc_error: float = 0.021  # oscillator off nominal (relative: +2.1 % -> longer conversions)
    drift: float = 0.001  # amplitude of the slow drift (relative)
    drift_period_s: float = 120.0
    shunt_ohm: float = 0.005
    shunt_lsb_uv: float = 40.0
    bus_lsb_mv: float = 8.0
    v0: float = 5.08  # supply, V
    r_source: float = 0.025  # ohm: bus voltage sag with current
    adc_noise_ma: float = 3.0  # rms input noise of a conversion, before quantisation
    config_change_s: float | None = None  # at this time into the pass, conv_us halves


@dataclass(frozen=True)
class Sampler:
    """The reading side: pacing, file reads, latch point, clock misalignment."""

    rate_hz: float = 1000.0
    wake_us: float = 25.0  # mean wake-up latency after a deadline (exponential)
    stall_p: float = 0.003  # probability of a long stall before a pass
    stall_us: tuple[float, float] = (500.0, 4000.0)
    files: int = 6  # files read per pass (3 rails x mV, mA)
    current_file: int = 1  # position of the total rail's mA file in the pass
    voltage_file: int = 0
    read_us: float = 100.0  # mean I2C transaction time
    latch_us: float = 45.0  # the register is latched this long after the read starts
    latch_jitter_us: float = 2.0
    read_jitter_us: float = 10.0  # exponential extra time after the latch
    misalign_us: float = 37.0  # layer windows are stamped this late against the sensor clock
    window_jitter_us: float = 1.5  # per-run stamping jitter of the layer windows
    mode: str = "continuous"  # "continuous" | "wait" (JetPack 5) | "point"


@dataclass(frozen=True)
class Truth:
    """The exact answers."""

    idle_w: float
    layer_net_w: F64  # time-weighted mean net power over typical executions
    layer_energy_j: F64  # net energy per typical execution = net power x typical mean latency
    layer_latency_s: F64  # mean latency of typical (non-outlier) executions
    gap_net_w: float
    inference_energy_j: float  # net energy per typical inference (layers only, no gap)
    inference_energy_all_j: float  # the same over all runs, outliers included
    outlier_runs: I64
    offset_ns: float  # mean latch delay after the read start + misalignment (the offset to find)
    misalign_ns: float
    mean_period_ns: float  # the chip's mean real cycle over the pass
    nominal_period_ns: float
    conversion_ends_ns: I64  # real end of every conversion of the total rail's current


@dataclass(frozen=True)
class Dataset:
    """One profiling pass as the sampler and the worker record it."""

    read_start_ns: I64  # the total rail's current file read
    read_end_ns: I64
    read_latch_ns: I64  # when that read latched the register (truth: the estimator never sees it)
    current_ma: F64
    voltage_mv: F64  # the pass's bus voltage read
    pass_mid_ns: I64  # mid-point of each sampler pass ("old data" has only this)
    layer_start_ns: I64  # (runs, L) as reported by the worker
    layer_end_ns: I64
    truth: Truth
    chip: Chip
    sampler: Sampler
    workload: Workload
    point_like: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def true_offset_ns(self, anchor: str = "start") -> float:
        """The offset an estimator anchored at ``anchor`` ("start", "end", "mid": the pass's
        mid-point) should find: mean(latch - anchor) + the layer windows' misalignment."""
        ref = {"start": self.read_start_ns, "end": self.read_end_ns, "mid": self.pass_mid_ns}
        return float(np.mean(self.read_latch_ns - ref[anchor])) + self.truth.misalign_ns

    def old_data(self) -> Dataset:
        """The same pass as a result directory written before per-read stamps: only the pass's
        mid-point stamp per read."""
        return replace(self, read_start_ns=self.pass_mid_ns.copy(),
                       read_end_ns=self.pass_mid_ns.copy())  # fmt: skip


# ---------------------------------------------------------------------------------------------
# workloads


def resnet18_like(runs: int = 3000, seed: int = 18, **kw: object) -> Workload:
    """29 layers of 11-500 us (log-uniform, a few very short ones), 1.5-9 W net."""
    rng = np.random.default_rng(seed)
    us = np.exp(rng.uniform(np.log(11.0), np.log(500.0), 29))
    us[[3, 11, 20]] = (11.0, 14.0, 19.0)
    w = rng.uniform(1.5, 9.0, 29)
    return Workload(tuple(float(x) for x in np.round(us, 1)), tuple(float(x) for x in w),
                    runs=runs, **kw)  # type: ignore[arg-type]  # fmt: skip


def deep_200(runs: int = 3000, seed: int = 200, **kw: object) -> Workload:
    """200 layers, lognormal latencies around 40 us (11 us floor, ~10 ms per inference)."""
    rng = np.random.default_rng(seed)
    us = np.clip(rng.lognormal(np.log(35.0), 0.8, 200), 11.0, 600.0)
    us *= 10000.0 / us.sum() if us.sum() > 10000.0 else 1.0
    w = rng.uniform(1.5, 9.0, 200)
    return Workload(tuple(float(x) for x in np.round(np.maximum(us, 11.0), 1)),
                    tuple(float(x) for x in w), runs=runs, **kw)  # type: ignore[arg-type]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# physics


class _Piecewise:
    """A piecewise-constant signal with exact window means via its cumulative integral."""

    def __init__(self, edges: I64, levels: F64) -> None:
        # edges: n + 1 sorted segment boundaries (ns); levels: n values
        self.edges = edges
        self.levels = levels
        seg = np.diff(edges).astype(np.float64) * levels
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])

    def integral(self, t: npt.ArrayLike) -> F64:
        """Integral from the first edge to ``t``; beyond the ends the end levels extend."""
        tt = np.asarray(t, dtype=np.int64)
        i = np.clip(np.searchsorted(self.edges, tt, "right") - 1, 0, self.levels.size - 1)
        return self.cum[i] + (tt - self.edges[i]).astype(np.float64) * self.levels[i]

    def mean(self, a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
        aa = np.asarray(a, dtype=np.int64)
        bb = np.asarray(b, dtype=np.int64)
        return (self.integral(bb) - self.integral(aa)) / np.maximum(bb - aa, 1)

    def at(self, t: npt.ArrayLike) -> F64:
        tt = np.asarray(t, dtype=np.int64)
        i = np.clip(np.searchsorted(self.edges, tt, "right") - 1, 0, self.levels.size - 1)
        return self.levels[i]


def _timeline(w: Workload, rng: np.random.Generator, t0: int) -> dict[str, object]:
    """The true power timeline of the pass: segment edges, gross power levels, windows, truth."""
    L = len(w.layer_us)
    R = w.runs
    us = np.asarray(w.layer_us)
    pw = np.asarray(w.layer_w)
    lat = us[None, :] * np.exp(rng.normal(0.0, w.jitter, (R, L)) - 0.5 * w.jitter**2)
    lat_ns = np.maximum(np.rint(lat * 1e3), 1000).astype(np.int64)
    level = pw[None, :] * (1.0 + rng.normal(0.0, w.level_noise, (R, L)))
    outlier = rng.random(R) < w.outlier_p
    o_runs = np.flatnonzero(outlier)
    o_layer = rng.integers(0, L, o_runs.size)
    stall_ns = np.rint(lat_ns[o_runs, o_layer] * (rng.uniform(*w.outlier_factor, o_runs.size)
                                                  - 1.0)).astype(np.int64)  # fmt: skip
    gap_ns = np.rint(rng.uniform(*w.gap_us, R) * 1e3).astype(np.int64)
    # segments per run: L layers, then the gap; an outlier layer's stall is a sub-segment
    seg_d = np.concatenate([lat_ns, gap_ns[:, None]], axis=1)
    seg_p = np.concatenate([level, np.full((R, 1), w.gap_w)], axis=1)
    flat_d = seg_d.reshape(-1)
    flat_p = seg_p.reshape(-1)
    if o_runs.size:
        pos = o_runs * (L + 1) + o_layer + 1  # insert the stall after the layer's own segment
        flat_d = np.insert(flat_d, pos, stall_ns)
        flat_p = np.insert(flat_p, pos, w.gap_w)
    pad = int(w.pad_s * 1e9)
    d = np.concatenate([[pad], flat_d, [pad]])
    p = np.concatenate([[w.gap_w], flat_p, [w.gap_w]]) + w.idle_w
    edges = t0 + np.concatenate([[0], np.cumsum(d)])
    # true layer windows: a layer's window is its own segment plus its stall
    rep_d = seg_d.copy()
    rep_d[o_runs, o_layer] += stall_ns
    run_len = rep_d.sum(axis=1)
    run_start = t0 + pad + np.concatenate([[0], np.cumsum(run_len)[:-1]])
    ends = run_start[:, None] + np.cumsum(rep_d[:, :L], axis=1)
    starts = ends - rep_d[:, :L]
    typical = np.ones((R, L), dtype=bool)
    typical[o_runs, :] = False
    net = level * lat_ns
    e_exec = np.where(typical, net, 0.0).sum(axis=0) / typical.sum(axis=0) * 1e-9
    lat_typ = np.where(typical, lat_ns, 0).sum(axis=0) / typical.sum(axis=0) * 1e-9
    e_all = net.sum(axis=1) * 1e-9
    e_all[o_runs] += w.gap_w * stall_ns * 1e-9
    return {
        "edges": edges, "p": p, "starts": starts, "ends": ends, "o_runs": o_runs,
        "layer_net_w": e_exec / lat_typ, "layer_energy_j": e_exec, "layer_latency_s": lat_typ,
        "inference_energy_j": float(net[~outlier].sum(axis=1).mean()) * 1e-9,
        "inference_energy_all_j": float(e_all.mean()),
    }  # fmt: skip


def _conversions(c: Chip, t0: int, t1: int, rng: np.random.Generator, pass0: int
                 ) -> tuple[I64, F64, float]:
    """End times of every conversion from before ``t0`` to after ``t1`` and their kind index
    (0 = CH1 shunt, 1 = CH1 bus, 2 = CH2 shunt, ...), plus the nominal cycle (ns)."""
    bus_us = c.conv_us if c.bus_conv_us is None else c.bus_conv_us
    per = np.tile([c.conv_us, bus_us], c.channels) * c.averaging * 1e3
    nominal = float(per.sum())
    span = t1 - t0 + 2 * nominal
    n = int(span / per.min() * 1.2) + 2 * per.size
    n_cyc = n // per.size + 1
    kind = np.tile(np.arange(per.size), n_cyc)
    d = np.tile(per, n_cyc)
    start = t0 - nominal * rng.uniform(1.0, 2.0)
    t_nom = start + np.concatenate([[0.0], np.cumsum(d)[:-1]])
    phase = rng.uniform(0, 2 * math.pi)
    scale = 1.0 + c.osc_error + c.drift * np.sin(2 * math.pi * (t_nom - t0) * 1e-9
                                                 / c.drift_period_s + phase)  # fmt: skip
    if c.config_change_s is not None:
        d = np.where(t_nom > pass0 + c.config_change_s * 1e9, d * 0.5, d)
    ends = start + np.cumsum(d * scale)
    keep = ends < t1 + 2 * nominal
    return np.rint(ends[keep]).astype(np.int64), kind[keep].astype(np.float64), nominal


def _read_times(s: Sampler, t0: int, t1: int, rng: np.random.Generator) -> tuple[I64, I64, I64]:
    """Per pass and file: read start, latch and end (ns), shape (passes, files)."""
    period = 1e9 / s.rate_hz
    n = int((t1 - t0) / period)
    dl = t0 + np.arange(n) * period
    wake = rng.exponential(s.wake_us * 1e3, n)
    stall = rng.random(n) < s.stall_p
    wake[stall] += rng.uniform(*s.stall_us, int(stall.sum())) * 1e3
    pre = np.maximum(s.latch_us * 1e3 + rng.normal(0, s.latch_jitter_us * 1e3, (n, s.files)), 0)
    post = (s.read_us - s.latch_us - s.read_jitter_us) * 1e3 + rng.exponential(
        s.read_jitter_us * 1e3, (n, s.files))  # fmt: skip
    dur = pre + post
    start = dl[:, None] + wake[:, None] + np.concatenate(
        [np.zeros((n, 1)), np.cumsum(dur, axis=1)[:, :-1]], axis=1)  # fmt: skip
    # absolute deadlines: a pass that overruns delays the next; start_j = max(own wake-up,
    # previous end) = cumD_j + running max of (wake-up_i - cumD_i)
    d_pass = dur.sum(axis=1)
    cum_d = np.concatenate([[0.0], np.cumsum(d_pass)[:-1]])
    first = start[:, 0]
    shift = cum_d + np.maximum.accumulate(first - cum_d) - first
    start = start + shift[:, None]
    latch = start + pre
    end = start + dur
    return (np.rint(start).astype(np.int64), np.rint(latch).astype(np.int64),
            np.rint(end).astype(np.int64))  # fmt: skip


def _wait_reads(s: Sampler, c: Chip, cycle_ends: I64, t0: int, t1: int,
                rng: np.random.Generator) -> tuple[I64, I64, I64]:
    """JetPack 5 reads: each file read polls the conversion-ready flag (set at each cycle end,
    cleared by the poll) and sleeps U(T/4, T) between polls; the data is latched at the end."""
    period = 1e9 / s.rate_hz
    T = float(np.median(np.diff(cycle_ends)))
    starts: list[float] = []
    latches: list[float] = []
    endl: list[float] = []
    t = float(t0)
    last_clear = t
    k = 0
    while t < t1:
        dl = t0 + k * period
        k += 1
        t = max(t, dl) + rng.exponential(s.wake_us * 1e3)
        for _ in range(s.files):
            st = t
            while True:
                t += 30e3  # the poll's I2C read of Mask/Enable
                ready = np.searchsorted(cycle_ends, last_clear, "right") < np.searchsorted(
                    cycle_ends, t, "right")  # fmt: skip
                last_clear = t
                if ready:
                    break
                t += rng.uniform(T / 4, T)
            t += s.read_us * 1e3 + rng.exponential(s.read_jitter_us * 1e3)
            starts.append(st)
            latches.append(t - 20e3)
            endl.append(t)
        if len(starts) > 5_000_000:
            break
    n = len(starts) // s.files
    a = np.rint(np.array(starts[: n * s.files])).astype(np.int64).reshape(n, s.files)
    b = np.rint(np.array(latches[: n * s.files])).astype(np.int64).reshape(n, s.files)
    e = np.rint(np.array(endl[: n * s.files])).astype(np.int64).reshape(n, s.files)
    return a, b, e


def generate(w: Workload, chip: Chip | None = None, sampler: Sampler | None = None,
             seed: int = 0) -> Dataset:
    """One profiling pass of ``w`` read through ``chip`` by ``sampler``; see the module doc."""
    c = chip or Chip()
    s = sampler or Sampler()
    rng = np.random.default_rng(seed)
    t0 = 7_000_000_000_000 + int(rng.integers(0, 10**9))
    tl = _timeline(w, rng, t0)
    edges: I64 = tl["edges"]  # type: ignore[assignment]
    p: F64 = tl["p"]  # type: ignore[assignment]
    v = 0.5 * (c.v0 + np.sqrt(c.v0**2 - 4 * c.r_source * p))
    cur = _Piecewise(edges, p / v)  # A
    vol = _Piecewise(edges, v)  # V
    t1 = int(edges[-1])
    ends, kind, nominal = _conversions(c, t0, t1, rng, int(edges[0] + w.pad_s * 1e9))
    per = np.tile([c.conv_us, c.conv_us if c.bus_conv_us is None else c.bus_conv_us],
                  c.channels) * c.averaging  # fmt: skip
    scale = np.diff(np.concatenate([[ends[0] - per[int(kind[0])] * 1e3], ends]))
    starts = ends - scale  # conversions are back to back
    sh = kind == 0
    bu = kind == 1
    i_mean = cur.mean(starts[sh], ends[sh]) + rng.normal(0, c.adc_noise_ma * 1e-3, int(sh.sum()))
    lsb_a = c.shunt_lsb_uv * 1e-6 / c.shunt_ohm
    i_reg = np.rint(i_mean / lsb_a) * lsb_a * 1e3  # mA, 8 mA steps (integer mA)
    v_reg = np.rint(vol.mean(starts[bu], ends[bu]) * 1e3 / c.bus_lsb_mv) * c.bus_lsb_mv
    sh_end = ends[sh]
    bu_end = ends[bu]
    lo, hi = t0 + 1_000_000, t1 - 1_000_000
    if s.mode == "wait":
        cyc_end = ends[kind == per.size - 1]
        rs, rl, re = _wait_reads(s, c, cyc_end, lo, hi, rng)
    elif s.mode in ("continuous", "point"):
        rs, rl, re = _read_times(s, lo, hi, rng)
    else:
        raise ValueError(f"sampler mode {s.mode!r}")
    ci, vi = s.current_file, s.voltage_file
    if s.mode == "point":
        ma = np.rint(cur.at(rl[:, ci]) * 1e3 + rng.normal(0, 1.0, rl.shape[0]))
        mv = np.rint(vol.at(rl[:, vi]) * 1e3)
    else:
        k_i = np.searchsorted(sh_end, rl[:, ci], "right") - 1
        k_v = np.searchsorted(bu_end, rl[:, vi], "right") - 1
        ma = i_reg[k_i]
        mv = v_reg[k_v]
    mid = (rs[:, 0] + re[:, -1]) // 2
    mis = s.misalign_us * 1e3 + rng.normal(0, s.window_jitter_us * 1e3, w.runs)
    ls = np.rint(tl["starts"] + mis[:, None]).astype(np.int64)  # type: ignore[operator]
    le = np.rint(tl["ends"] + mis[:, None]).astype(np.int64)  # type: ignore[operator]
    real_cycle = np.diff(ends[kind == 0])
    inside = (ends[kind == 0][1:] > edges[0]) & (ends[kind == 0][1:] < t1)
    truth = Truth(
        idle_w=w.idle_w,
        layer_net_w=np.asarray(tl["layer_net_w"]),
        layer_energy_j=np.asarray(tl["layer_energy_j"]),
        layer_latency_s=np.asarray(tl["layer_latency_s"]),
        gap_net_w=w.gap_w,
        inference_energy_j=float(tl["inference_energy_j"]),  # type: ignore[arg-type]
        inference_energy_all_j=float(tl["inference_energy_all_j"]),  # type: ignore[arg-type]
        outlier_runs=np.asarray(tl["o_runs"], dtype=np.int64),
        offset_ns=float(np.mean(rl[:, ci] - rs[:, ci])) + s.misalign_us * 1e3,
        misalign_ns=s.misalign_us * 1e3,
        mean_period_ns=float(real_cycle[inside].mean()),
        nominal_period_ns=nominal,
        conversion_ends_ns=sh_end,
    )
    return Dataset(
        read_start_ns=rs[:, ci].copy(), read_end_ns=re[:, ci].copy(),
        read_latch_ns=rl[:, ci].copy(), current_ma=ma,
        voltage_mv=mv.astype(np.float64), pass_mid_ns=mid, layer_start_ns=ls, layer_end_ns=le,
        truth=truth, chip=c, sampler=s, workload=w, point_like=s.mode == "point",
    )  # fmt: skip
