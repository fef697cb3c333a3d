"""Per-layer power from window-mean readings: one equation per conversion, solved across runs.

The model (DESIGN.md, "What an INA3221 reading is"): a conversion of the rail's current is the
mean over its window, so each *distinct conversion* k gives one equation

    y_k = V_k I_k - idle = sum_l  w_kl P_l  +  w_k,gap P_gap,
    w_kl = |window_k ∩ layer l| / |window_k|

where the window ends at the fitted conversion end (:mod:`jetpower.report.schedule`) plus one
offset, is ``window_ns`` long (scaled by the fitted period: the chip's oscillator sets both), and
"gap" is every instant of the pass outside a layer window (the profiler's report between runs).
A point-like source gives one equation per read with a one-hot row (window length 0); the same
code solves both.

- **Design matrix.**  Layer windows are flattened into one sorted list of segments; each
  conversion window overlaps a contiguous range of them (two ``searchsorted``), expanded with
  ``np.repeat`` and accumulated with ``np.bincount``: no per-window Python loop.
- **Solver.**  The design is tall (10^4-10^5 conversions) and narrow (layers + 1), so the fit
  works on the normal equations G = A^T A, h = A^T y, column-equilibrated and solved by Cholesky
  (``scipy.linalg.cho_factor``/``cho_solve``; ``scipy.linalg.lstsq`` on the same system where G
  is not numerically positive definite).  Normal equations make the offset search and the
  bootstrap cheap: a replicate is a weighted sum of per-block Grams.  Unconstrained least
  squares, not NNLS: a bound at 0 biases the estimate and the interval of every low-power layer
  and of the gap (which may sit below idle); negative estimates are reported as they are.
- **Offset.**  The latch point within a read plus the constant misalignment of the layer windows
  against the sensor clock: one number, chosen by least residual over a coarse-to-fine grid
  (``offset_range_ns``, steps of 100 us down to 1 us, then a parabola through the best three),
  on a fixed subset of conversions so that every candidate is judged on the same equations.
  Its standard error comes from the residual's curvature and is propagated into the intervals.
- **Intervals.**  Block bootstrap over runs: runs are cut into ``n_blocks`` contiguous blocks,
  each conversion belongs to the block of the run its window ends in, per-block Grams
  A_b^T A_b, A_b^T y_b are formed once, and each replicate sums them with multinomial weights.
  Energy replicates use the same blocks' latencies.  95 % half-width = half the 2.5-97.5 %
  percentile range, combined in quadrature with the offset and idle terms.
- **Outlier runs and latency.**  Per layer, an execution is an outlier when its latency exceeds
  Q3 + 3 max(IQR, 2 % of the median, 1 us) (Tukey's far fence, floored so that tight
  distributions do not flag ordinary jitter).  Conversions overlapping a run with an outlier
  execution are left out of the equations (the power inside a stall does not follow the layer),
  and the latency behind ``energy_j`` is the mean over non-outlier executions; the raw mean and
  the median are reported beside it.
- **Identifiability.**  Where the window spans >= ``max_window_runs`` whole inferences (NVML's
  ~100 ms), every row holds nearly the same mix of layers: per-layer power is not identifiable
  and the whole fit is refused with that reason.  A layer is refused when too few windows overlap
  it, or when its column is nearly a combination of the others (variance inflation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.linalg as sla
import scipy.sparse as sp

from jetpower.report.schedule import ReadingModel, ScheduleFit, fit_schedule

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

#: fewest conversion windows overlapping a layer for an estimate
MIN_EQUATIONS = 20
#: variance inflation above which a layer's column counts as collinear with the others
MAX_VIF = 1e6


@dataclass(frozen=True)
class RailReads:
    """One rail's current reads: the stamp the schedule is fitted on (read start, read end, or
    the pass mid-point for old data), the current (mA) and the bus voltage of the same pass
    (mV)."""

    anchor_ns: I64
    current_ma: F64
    voltage_mv: F64
    rail: str = "total"


@dataclass(frozen=True)
class ProfiledRuns:
    """Layer windows of the profiling pass on the sensor's clock: (runs, layers) ns arrays."""

    names: tuple[str, ...]
    start_ns: I64
    end_ns: I64


@dataclass(frozen=True)
class LayerEstimate:
    """One layer: net power and energy per execution, with 95 % half-widths (None: refused)."""

    name: str
    power_w: float | None
    power_ci_w: float | None
    energy_j: float | None
    ci_j: float | None
    latency_mean_s: float  # over non-outlier executions: the one behind energy_j
    latency_median_s: float
    latency_mean_all_s: float
    n_executions: int
    n_outliers: int
    n_equations: int  # conversion windows that overlap its executions
    overlap: float  # sum of its weights: how many whole windows' worth of equations it has
    note: str = ""


@dataclass(frozen=True)
class FitSummary:
    """How the per-layer fit went: method, offset, conditioning, residuals, consistency."""

    ok: bool
    reason: str
    method: str
    rail: str
    offset_ns: float
    offset_se_ns: float
    offset_searched: bool
    window_ns: float
    n_conversions: int  # distinct conversions (or point reads) seen
    n_equations: int  # of them used: inside the pass, not overlapping an outlier run
    n_runs: int
    n_outlier_runs: int
    n_params: int
    condition: float  # of the column-equilibrated design
    residual_rms_w: float
    gap_power_w: float
    gap_ci_w: float
    sum_energy_j: float  # sum of the estimated layers' energy_j
    #: net energy of the pass minus its gaps, per run: mean conversion value x pass length -
    #: gap power x gap time, / runs (all runs, stalls included); a check on sum_energy_j
    pass_energy_per_inference_j: float
    n_boot: int
    n_blocks: int
    inconsistent_reads: float  # fraction of conversions whose reads disagree on the value
    schedule: ScheduleFit | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class LayerFit:
    """Per-layer estimates of one rail, the fit's summary, and the bootstrap replicates (power of
    each layer and the gap, latency of each layer) for summing rails on the same blocks."""

    layers: tuple[LayerEstimate, ...]
    summary: FitSummary
    boot_power_w: F64 = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    boot_latency_s: F64 = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    energy_extra_var: F64 = field(repr=False, default_factory=lambda: np.empty(0))


# ---------------------------------------------------------------------------------------------
# design


class _Segments:
    """The layer windows flattened in time order (relative ns, float) with their layer index."""

    def __init__(self, start: F64, end: F64, n_layers: int) -> None:
        flat_s = start.reshape(-1)
        flat_e = end.reshape(-1)
        lab = np.tile(np.arange(n_layers), start.shape[0])
        order = np.argsort(flat_s, kind="stable")
        self.s = flat_s[order]
        self.e = flat_e[order]
        self.lab = lab[order]
        self.L = n_layers
        self.cum_e = np.maximum.accumulate(self.e)

    def overlaps(self, lo: F64, hi: F64) -> sp.csr_array:
        """Sparse (len(lo), L + 1) design: the fraction of each window [lo, hi] spent in each
        layer, and the rest (the gap) in the last column; one-hot where lo == hi (a point)."""
        n = lo.size
        P = self.L + 1
        point = hi <= lo
        i0 = np.searchsorted(self.cum_e, lo, "right")
        i1 = np.where(point, np.searchsorted(self.s, hi, "right"),
                      np.searchsorted(self.s, hi, "left"))  # fmt: skip
        cnt = np.maximum(i1 - i0, 0)
        rows = np.repeat(np.arange(n), cnt)
        first = np.repeat(i0 - (np.cumsum(cnt) - cnt), cnt)
        idx = first + np.arange(rows.size)
        seg_s, seg_e = self.s[idx], self.e[idx]
        lo_r, hi_r = lo[rows], hi[rows]
        pt = point[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(pt, ((seg_s <= lo_r) & (lo_r < seg_e)).astype(np.float64),
                         np.maximum(np.minimum(hi_r, seg_e) - np.maximum(lo_r, seg_s), 0.0)
                         / (hi - lo)[rows])  # fmt: skip
        gap = np.maximum(1.0 - np.bincount(rows, w, minlength=n), 0.0)
        r = np.concatenate([rows, np.arange(n)])
        c = np.concatenate([self.lab[idx], np.full(n, self.L)])
        v = np.concatenate([w, gap])
        keep = v > 0
        return sp.csr_array((v[keep], (r[keep], c[keep])), shape=(n, P))


def _outliers(dur: F64) -> B:
    """(runs, layers) mask of outlier executions: above Q3 + 3 max(IQR, 2 % median, 1 us)."""
    q1, med, q3 = np.percentile(dur, [25, 50, 75], axis=0)
    spread = np.maximum(np.maximum(q3 - q1, 0.02 * med), 1000.0)
    return dur > (q3 + 3.0 * spread)[None, :]


def _solve(g: F64, h: F64) -> F64:
    """Solve the normal equations G x = h with column equilibration (Cholesky, else lstsq)."""
    d = np.sqrt(np.maximum(np.diag(g), 0.0))
    d[d == 0] = 1.0
    gs = g / d[:, None] / d[None, :]
    hs = h / d
    try:
        z = sla.cho_solve(sla.cho_factor(gs, check_finite=False), hs, check_finite=False)
    except (np.linalg.LinAlgError, sla.LinAlgError):
        z = sla.lstsq(gs, hs, check_finite=False)[0]
    return z / d


def _gram(a: sp.csr_array, y: F64) -> tuple[F64, F64, float]:
    """A^T A (dense: it is small), A^T y and y^T y of a sparse design."""
    at = a.T.tocsr()
    return np.asarray((at @ a).toarray()), np.asarray(at @ y), float(y @ y)


def _rss(g: F64, h: F64, yy: float, x: F64) -> float:
    return float(yy - 2 * h @ x + x @ g @ x)


# ---------------------------------------------------------------------------------------------
# the estimator


@dataclass
class _Problem:
    seg: _Segments
    end_rel: F64  # window ends (anchor frame, relative ns) of every equation
    width: F64  # window lengths (ns)
    y: F64  # net power (W)
    pass_lo: float
    pass_hi: float
    bad_lo: F64  # outlier runs' spans
    bad_hi: F64
    run_start: F64


def _rows(p: _Problem, off: float, sel: npt.NDArray[np.intp] | None = None
          ) -> tuple[sp.csr_array, F64, npt.NDArray[np.intp]]:
    """(design, y, indices) of the equations usable at offset ``off`` (optionally among ``sel``)."""
    idx = np.arange(p.y.size) if sel is None else sel
    hi = p.end_rel[idx] + off
    lo = hi - p.width[idx]
    ok = (lo >= p.pass_lo) & (hi <= p.pass_hi)
    if p.bad_lo.size:
        j = np.searchsorted(p.bad_lo, hi, "right") - 1
        hit = (j >= 0) & (p.bad_hi[np.maximum(j, 0)] > lo)
        j2 = np.searchsorted(p.bad_lo, lo, "right") - 1
        hit |= (j2 >= 0) & (p.bad_hi[np.maximum(j2, 0)] > lo)
        ok &= ~hit
    idx = idx[ok]
    return p.seg.overlaps(lo[ok], hi[ok]), p.y[idx], idx


def _search_offset(p: _Problem, rng_ns: tuple[float, float], point: bool, n_sub: int,
                   seed: int) -> tuple[float, float, list[tuple[float, float]]]:
    """Least-residual offset: coarse-to-fine grid, then a parabola.  Returns (offset, se, grid)."""
    lo_r, hi_r = rng_ns
    reach = max(abs(lo_r), abs(hi_r))
    hi_all = p.end_rel
    inner = np.flatnonzero((hi_all - p.width - reach >= p.pass_lo) & (hi_all + reach <= p.pass_hi))
    if inner.size > n_sub:
        inner = np.sort(np.random.default_rng(seed).choice(inner, n_sub, replace=False))
    # equations usable at every candidate: drop those that touch an outlier run at any offset
    _, _, keep_a = _rows(p, lo_r, inner)
    _, _, keep_b = _rows(p, hi_r, inner)
    sub = np.intersect1d(keep_a, keep_b)
    if sub.size < 10:
        return math.nan, math.nan, []
    cache: dict[float, float] = {}

    def rss(off: float) -> float:
        key = round(off, 1)
        if key not in cache:
            a, y, _ = _rows(p, off, sub)
            g, h, yy = _gram(a, y)
            cache[key] = _rss(g, h, yy, _solve(g, h)) / max(y.size, 1)
        return cache[key]

    step = 20_000.0 if point else 200_000.0
    grid = np.arange(lo_r, hi_r + step / 2, step)
    best = min(grid, key=rss)
    while step > 2_000.0:
        step /= 5.0
        grid = best + step * np.arange(-3, 4)
        grid = grid[(grid >= lo_r) & (grid <= hi_r)]
        best = min(grid, key=rss)
    f0, fm, fp = rss(best), rss(best - step), rss(best + step)
    curv = (fp + fm - 2 * f0) / step**2
    off = best
    if curv > 0:
        off = best + 0.5 * step * (fm - fp) / (fp + fm - 2 * f0)
        off = float(np.clip(off, best - step, best + step))
    # se: Gauss-Newton variance 2 s^2 / RSS'' with RSS = n x mean residual
    n = sub.size
    se = math.sqrt(2.0 * max(f0, 0.0) / (n * curv)) if curv > 0 else math.inf
    return float(off), se, sorted(cache.items())


def _refusal(names: Sequence[str], lat: tuple[F64, F64, F64, I64, I64], reason: str,
             summary: FitSummary) -> LayerFit:
    mean, med, mean_all, n_ex, n_out = lat
    layers = tuple(
        LayerEstimate(n, None, None, None, None, float(mean[j]), float(med[j]),
                      float(mean_all[j]), int(n_ex[j]), int(n_out[j]), 0, 0.0, reason)
        for j, n in enumerate(names)
    )  # fmt: skip
    return LayerFit(layers, summary)


def estimate_layers(  # noqa: PLR0911  (each refusal returns its reason)
    reads: RailReads,
    model: ReadingModel,
    runs: ProfiledRuns,
    idle_w: float,
    *,
    idle_ci_w: float = 0.0,
    schedule: ScheduleFit | None = None,
    offset_ns: float | None = None,
    offset_range_ns: tuple[float, float] = (-2_000_000.0, 2_000_000.0),
    n_blocks: int = 40,
    n_boot: int = 200,
    seed: int = 0,
    min_equations: int = MIN_EQUATIONS,
    max_window_runs: float = 3.0,
    n_search: int = 12_000,
) -> LayerFit:
    """Per-layer net power and energy per execution of one rail (see the module docstring).

    ``reads``: the rail's current reads (sorted anchors); ``model``: what a reading is;
    ``runs``: the layer windows on the sensor's clock; ``idle_w``: gross idle power (its 95 %
    half-width ``idle_ci_w``).  ``schedule``: a fitted schedule (fitted here from ``reads`` when
    None and the model is scheduled).  ``offset_ns``: fixed offset (None: self-calibrated over
    ``offset_range_ns``).  Data problems come back as refusals (``summary.ok`` False, every layer
    with ``energy_j`` None and the reason), never as exceptions.
    """
    names = tuple(runs.names)
    st = np.asarray(runs.start_ns, dtype=np.int64)
    en = np.asarray(runs.end_ns, dtype=np.int64)
    if st.ndim != 2 or st.shape != en.shape or st.shape[1] != len(names):
        raise ValueError(f"layer windows must be (runs, {len(names)}) arrays, got {st.shape} "
                         f"and {en.shape}")  # fmt: skip
    R, L = st.shape
    anchor = np.asarray(reads.anchor_ns, dtype=np.int64)
    ma = np.asarray(reads.current_ma, dtype=np.float64)
    mv = np.asarray(reads.voltage_mv, dtype=np.float64)
    if not (anchor.shape == ma.shape == mv.shape):
        raise ValueError("reads: anchor_ns, current_ma and voltage_mv differ in shape")
    dur = (en - st).astype(np.float64)
    out_mask = _outliers(dur) if R >= 4 else np.zeros((R, L), bool)
    typ = np.where(out_mask, np.nan, dur)
    with np.errstate(invalid="ignore"):
        lat = (np.nanmean(typ, axis=0) * 1e-9, np.median(dur, axis=0) * 1e-9,
               dur.mean(axis=0) * 1e-9, (~out_mask).sum(axis=0), out_mask.sum(axis=0))  # fmt: skip
    point = model.kind == "instant"
    base = dict(  # noqa: C408
        rail=reads.rail, offset_ns=math.nan, offset_se_ns=math.nan,
                offset_searched=offset_ns is None, window_ns=model.window_ns, n_conversions=0,
                n_equations=0, n_runs=R, n_outlier_runs=int(out_mask.any(axis=1).sum()),
                n_params=L + 1, condition=math.nan, residual_rms_w=math.nan,
                gap_power_w=math.nan, gap_ci_w=math.nan, sum_energy_j=math.nan,
                pass_energy_per_inference_j=math.nan, n_boot=n_boot, n_blocks=n_blocks,
                inconsistent_reads=math.nan, schedule=schedule)  # fmt: skip

    def refuse(reason: str, method: str = "refused", **kw: object) -> LayerFit:
        return _refusal(names, lat, reason, FitSummary(False, reason, method,
                                                       **{**base, **kw}))  # fmt: skip

    if R == 0 or L == 0:
        return refuse("no profiled runs")
    if np.any(dur < 0):
        return refuse("a layer window ends before it starts")
    if model.kind == "counter":
        return refuse("the reading model is a counter: per-layer power needs power readings")
    run_start = st[:, 0].astype(np.float64)
    run_end = en[:, -1].astype(np.float64)
    if np.any(np.diff(run_start) <= 0) or np.any(st[1:, 0] < en[:-1, -1]):
        return refuse("profiled runs overlap or are not in time order")
    run_period = float(np.median(np.diff(run_start))) if R > 1 else float(run_end[0] - run_start[0])
    window = model.window_ns
    if not point and window >= max_window_runs * run_period:
        return refuse(f"every reading is a mean over {window * 1e-6:.1f} ms, "
                      f"{window / run_period:.0f} whole inferences of {run_period * 1e-6:.2f} ms: "
                      "per-layer power is not identifiable from such windows (only the energy "
                      "per inference is)", method="not-identifiable")  # fmt: skip
    if anchor.size < 2:
        return refuse(f"only {anchor.size} reads in the trace")
    if run_start[0] < anchor[0] or run_end[-1] > anchor[-1]:
        return refuse(f"the layer windows [{run_start[0] * 1e-9:.3f}, {run_end[-1] * 1e-9:.3f}] s "
                      f"lie outside the trace [{anchor[0] * 1e-9:.3f}, {anchor[-1] * 1e-9:.3f}] s")
    t_ref = float(run_start[0])
    notes: list[str] = []
    # ---- equations: one per distinct conversion (window) or per read (point) ------------------
    valid = np.isfinite(ma) & np.isfinite(mv)
    if point:
        end_rel = anchor[valid].astype(np.float64) - t_ref
        width = np.zeros(end_rel.size)
        y = ma[valid] * mv[valid] * 1e-6 - idle_w
        n_conv, incons = int(end_rel.size), 0.0
        method = "point-lsq"
    else:
        if model.cycle_ns is None:
            return refuse("window readings without a conversion schedule (cycle) cannot be placed")
        if schedule is None:
            schedule = fit_schedule(anchor, ma, model)
            base["schedule"] = schedule
        if not schedule.ok:
            return refuse(f"conversion schedule: {schedule.reason}")
        ev = schedule.latest_event(anchor[valid])
        scale = schedule.period_ns / schedule.nominal_ns
        # distinct conversions: events closer than half a cycle are one (block boundaries)
        order = np.argsort(ev, kind="stable")
        evs = ev[order]
        new = np.concatenate([[True], np.diff(evs) > 0.5 * schedule.period_ns])
        cid = np.cumsum(new) - 1
        first = order[new]
        vals = (ma[valid] * mv[valid])[order]
        incons = float(np.mean(np.bincount(cid, vals != vals[np.searchsorted(cid, cid)]) > 0))
        end_rel = ev[first] - model.event_lag_ns * scale - t_ref
        width = np.full(end_rel.size, window * scale)
        y = ma[valid][first] * mv[valid][first] * 1e-6 - idle_w
        n_conv = int(end_rel.size)
        method = "window-lsq"
    base.update(n_conversions=n_conv, inconsistent_reads=incons)
    st_r = st.astype(np.float64) - t_ref
    en_r = en.astype(np.float64) - t_ref
    bad = out_mask.any(axis=1)
    gap_after = np.concatenate([st_r[1:, 0], [en_r[-1, -1]]])
    prob = _Problem(_Segments(st_r, en_r, L), end_rel, width, y, 0.0, float(en_r[-1, -1]),
                    st_r[bad, 0], gap_after[bad], st_r[:, 0])  # fmt: skip
    min_rows = max(3 * (L + 1), 50)
    # ---- offset --------------------------------------------------------------------------------
    se_off = 0.0
    if offset_ns is None:
        off, se_off, _grid = _search_offset(prob, offset_range_ns, point, n_search, seed)
        if not math.isfinite(off):
            return refuse(f"only {n_conv} conversions, too few inside the profiled runs to "
                          "calibrate the offset", method=method)  # fmt: skip
    else:
        off = float(offset_ns)
    base.update(offset_ns=off, offset_se_ns=se_off)
    a, yv, idx = _rows(prob, off)
    if yv.size < min_rows:
        return refuse(f"only {yv.size} conversions inside the profiled runs (need >= {min_rows} "
                      f"for {L} layers and the gap)", method=method, n_equations=int(yv.size))
    base.update(n_equations=int(yv.size))
    # ---- fit -------------------------------------------------------------------------------------
    g, h, yy = _gram(a, yv)
    dg = np.sqrt(np.maximum(np.diag(g), 0.0))
    n_eq = np.bincount(a.indices, minlength=L + 1)
    overlap = np.asarray(a.sum(axis=0)).reshape(-1)
    refused = n_eq[:L] < min_equations
    est = ~np.concatenate([refused, [False]])
    gs = g[np.ix_(est, est)] / dg[est][:, None] / dg[est][None, :]
    ev_s = np.linalg.eigvalsh(gs)
    cond = float(math.sqrt(ev_s[-1] / ev_s[0])) if ev_s[0] > 0 else math.inf
    try:
        vif = np.diag(np.linalg.inv(gs))
    except np.linalg.LinAlgError:
        vif = np.full(int(est.sum()), np.inf)
    vif_all = np.full(L + 1, np.inf)
    vif_all[est] = vif
    collinear = (vif_all[:L] > MAX_VIF) & ~refused
    est[:L] &= ~collinear
    x = np.full(L + 1, math.nan)
    x[est] = _solve(g[np.ix_(est, est)], h[est])
    resid = float(math.sqrt(max(_rss(g[np.ix_(est, est)], h[est], yy, x[est]), 0.0) / yv.size))
    # ---- bootstrap over blocks of runs ----
    nb = int(min(n_blocks, R))
    run_of = np.clip(np.searchsorted(prob.run_start, prob.end_rel[idx] + off, "right") - 1, 0,
                     R - 1)  # fmt: skip
    blk_of_run = (np.arange(R) * nb) // R
    blk = blk_of_run[run_of]
    ei = np.flatnonzero(est)
    gb = np.empty((nb, ei.size, ei.size))
    hb = np.empty((nb, ei.size))
    cut = np.searchsorted(blk, np.arange(nb + 1))  # equations are in time order: blocks are slices
    for b in range(nb):
        gg, hh, _ = _gram(a[cut[b]:cut[b + 1]], yv[cut[b]:cut[b + 1]])
        gb[b] = gg[np.ix_(ei, ei)]
        hb[b] = hh[ei]
    typ0 = np.where(out_mask, 0.0, dur)
    lat_sum = np.stack([typ0[blk_of_run == b].sum(axis=0) for b in range(nb)])
    lat_cnt = np.stack([(~out_mask[blk_of_run == b]).sum(axis=0) for b in range(nb)])
    rng = np.random.default_rng(seed)
    mult = rng.multinomial(nb, np.full(nb, 1.0 / nb), n_boot).astype(np.float64)
    bp = np.full((n_boot, L + 1), math.nan)
    for i in range(n_boot):
        gi = np.tensordot(mult[i], gb, 1)
        hi = mult[i] @ hb
        bp[i, ei] = _solve(gi, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        bl = (mult @ lat_sum) / (mult @ lat_cnt) * 1e-9
    # offset uncertainty: d power / d offset by a symmetric difference
    dpdo = np.zeros(L + 1)
    if se_off > 0 and math.isfinite(se_off):
        h_step = max(min(se_off, 20_000.0), 1_000.0)
        xs = []
        for o in (off - h_step, off + h_step):
            a2, y2, _ = _rows(prob, o)
            g2, h2, _ = _gram(a2, y2)
            xs.append(_solve(g2[np.ix_(ei, ei)], h2[ei]))
        dpdo[ei] = (xs[1] - xs[0]) / (2 * h_step)
    # ---- results ----
    lat_mean = lat[0]
    layers: list[LayerEstimate] = []
    extra = np.zeros(L)
    for j, n in enumerate(names):
        common = (float(lat_mean[j]), float(lat[1][j]), float(lat[2][j]), int(lat[3][j]),
                  int(lat[4][j]), int(n_eq[j]), float(overlap[j]))  # fmt: skip
        if refused[j]:
            why = ("no conversion window overlaps its executions" if n_eq[j] == 0 else
                   f"only {n_eq[j]} conversion windows overlap its executions "
                   f"(need >= {min_equations}): more profiled runs")  # fmt: skip
            layers.append(LayerEstimate(n, None, None, None, None, *common, why))
            continue
        if collinear[j]:
            layers.append(LayerEstimate(n, None, None, None, None, *common,
                                        f"its overlaps are a combination of other layers' "
                                        f"(variance inflation {vif_all[j]:.1e}): windows never "
                                        "separate it from its neighbours"))  # fmt: skip
            continue
        p_j = float(x[j])
        e_j = p_j * float(lat_mean[j])
        q = np.nanpercentile(bp[:, j], [2.5, 97.5])
        qe = np.nanpercentile(bp[:, j] * bl[:, j], [2.5, 97.5])
        var_extra_p = (1.96 * se_off * dpdo[j]) ** 2 + idle_ci_w**2 if se_off > 0 else idle_ci_w**2
        hw_p = math.sqrt(((q[1] - q[0]) / 2) ** 2 + var_extra_p)
        hw_e = math.sqrt(((qe[1] - qe[0]) / 2) ** 2 + var_extra_p * float(lat_mean[j]) ** 2)
        extra[j] = var_extra_p * float(lat_mean[j]) ** 2
        layers.append(LayerEstimate(n, p_j, hw_p, e_j, hw_e, *common))
    qg = np.nanpercentile(bp[:, L], [2.5, 97.5])
    est_e = [lay.energy_j for lay in layers if lay.energy_j is not None]
    # direct energy per inference: mean net power over the pass x its length, minus the gaps
    t_pass = float(en_r[-1, -1])
    t_gap = t_pass - float(dur.sum())
    mean_net = float(np.mean(yv)) if yv.size else math.nan
    e_pass = (mean_net * t_pass - float(x[L]) * t_gap) * 1e-9
    if collinear.any():
        notes.append(f"{int(collinear.sum())} layers collinear with others")
    if refused.any():
        notes.append(f"{int(refused.sum())} layers with fewer than {min_equations} equations")
    summary = FitSummary(
        True, "", method, **{**base, "condition": cond, "residual_rms_w": resid,
                             "gap_power_w": float(x[L]), "gap_ci_w": float((qg[1] - qg[0]) / 2),
                             "sum_energy_j": float(sum(est_e)) if est_e else math.nan,
                             "pass_energy_per_inference_j": e_pass / R, "notes": tuple(notes)},
    )  # fmt: skip
    return LayerFit(tuple(layers), summary, bp, bl, extra)


def sum_rails(fits: Sequence[LayerFit]) -> list[tuple[str, float | None, float | None]]:
    """Per-layer (name, energy_j, 95 % half-width) of the sum of rails (AGX Orin's total).

    Each rail's fit must come from the same profiled runs with the same ``n_blocks``, ``n_boot``
    and ``seed``, so that replicate i of every rail resampled the same blocks of runs: the sum's
    interval then comes from the summed replicates, with the rails' correlation kept.  A layer
    refused on any rail is refused in the sum.
    """
    if not fits:
        return []
    names = [lay.name for lay in fits[0].layers]
    for f in fits[1:]:
        if [lay.name for lay in f.layers] != names:
            raise ValueError("rails were fitted on different layers")
        if f.boot_power_w.shape != fits[0].boot_power_w.shape:
            raise ValueError("rails were bootstrapped with different n_boot/layers")
    out: list[tuple[str, float | None, float | None]] = []
    for j, n in enumerate(names):
        if any(f.layers[j].energy_j is None for f in fits):
            out.append((n, None, None))
            continue
        e = sum(float(f.layers[j].energy_j or 0.0) for f in fits)
        rep = sum(f.boot_power_w[:, j] * f.boot_latency_s[:, j] for f in fits)
        q = np.nanpercentile(rep, [2.5, 97.5])
        extra = sum(float(f.energy_extra_var[j]) for f in fits)
        out.append((n, e, math.sqrt(((q[1] - q[0]) / 2) ** 2 + extra)))
    return out
