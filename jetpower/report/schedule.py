"""What a reading is, and when a window-mean sensor's conversions really ended.

:class:`ReadingModel` states what one channel's value means: an instantaneous value, the mean
over a window of known length held until the next conversion (INA3221), or a counter.  For a
scheduled window-mean channel, :func:`fit_schedule` fits the chip's real conversion schedule
from the reads alone:

- **Observations.**  Each read is stamped (its start, its end, or, for result directories
  written before per-read stamps, only the sampler pass's mid-point: the *anchor*).  Where the
  value differs from the previous read's, a conversion ended between the two latches: the
  change is *interval-censored* to ``(anchor[j-1], anchor[j]]`` in the anchor's frame (the latch
  sits a fixed, unknown time after the anchor; that constant is left to the estimator's offset
  calibration).  A conversion whose value equals the previous one is hidden, so consecutive
  changes may be several cycles apart.  With a JetPack 5 style driver (``latch="wait"``) every
  read waits for a fresh conversion: every read is a change, anchored at the read's end, and
  the fitted events are the chip's cycle ends (conversion-ready flag).
- **Model.**  Within a block of ``block_s`` seconds the events are ``t_k = phase + k T + c k^2``
  (the quadratic follows the oscillator's slow thermal drift).  Blocks are fitted independently,
  so drift over the run is followed.
- **Fit, per block.**  (1) The period, by a Rayleigh periodogram of the interval mid-points over
  the oscillator's tolerance around the nominal cycle (coarse grid, then fine).  (2) Each change
  gets its cycle number by rounding; least squares on the mid-points, with changes whose
  interval misses the fitted grid by more than a tenth of a cycle set aside.  (3) The Chebyshev
  centre of the feasible set: a linear programme (``scipy.optimize.linprog``, HiGHS) that
  maximises the smallest margin between the grid point and its interval's ends over the
  consistent changes.  The censoring intervals are ~1 ms wide, but hundreds of them at
  unrelated read phases pin the phase to a few us.
- **Checks.**  The fraction of changes whose interval holds its grid point within ``tol_ns``;
  the period against the nominal one (oscillator tolerance); period jumps between blocks
  (configuration changed mid-run); change spacings that are all multiples of m > 1 cycles (the
  chip averages or converts slower than the model says); values that change more often than once
  a cycle.  A fit that fails any of them comes back with ``ok=False`` and a reason, not an
  exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: the INA3221's conversion times (us)
INA3221_CONV_US = (140, 204, 332, 588, 1100, 2116, 4156, 8244)
#: how far the chip's oscillator may be off its nominal period (relative)
OSC_TOLERANCE = 0.10


@dataclass(frozen=True)
class ReadingModel:
    """What one channel's value is.

    ``kind``: ``"instant"`` (the value at the moment of the read), ``"window"`` (the mean over
    ``window_ns`` ending at a conversion end, held until the next one) or ``"counter"``.
    ``cycle_ns``: nominal period of the conversion schedule (None: not on a fixed schedule, e.g.
    NVML).  ``latch``: ``"continuous"`` (a read returns the latest completed value at once) or
    ``"wait"`` (the driver waits for a fresh conversion; the value is latched at the read's end).
    ``event_lag_ns``: in ``"wait"`` mode, the time from this conversion's end to the cycle end that
    sets the conversion-ready flag.
    """

    kind: Literal["instant", "window", "counter"]
    window_ns: float = 0.0
    cycle_ns: float | None = None
    latch: Literal["continuous", "wait"] = "continuous"
    event_lag_ns: float = 0.0
    source: str = ""

    @classmethod
    def ina3221(
        cls,
        *,
        channel: int = 1,
        enabled: tuple[int, ...] = (1, 2, 3),
        shunt_us: float = 1100.0,
        bus_us: float = 1100.0,
        samples: int = 1,
        latch: Literal["continuous", "wait"] = "continuous",
    ) -> ReadingModel:
        """The current (shunt) reading of ``channel`` on an INA3221 in continuous shunt+bus mode:
        conversions CH1 shunt, CH1 bus, CH2 shunt, ... over the ``enabled`` channels, each
        ``conv x samples`` long."""
        if channel not in enabled:
            raise ValueError(f"channel {channel} is not among the enabled channels {enabled}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        order = sorted(enabled)
        per = (shunt_us + bus_us) * samples * 1e3
        cycle = per * len(order)
        end_of_shunt = order.index(channel) * per + shunt_us * samples * 1e3
        return cls("window", shunt_us * samples * 1e3, cycle, latch,
                   cycle - end_of_shunt if latch == "wait" else 0.0,
                   f"INA3221 CH{channel} current, {len(order)} channels, {shunt_us:g} us x "
                   f"{samples}")  # fmt: skip

    @classmethod
    def instant(cls, source: str = "") -> ReadingModel:
        """A point-like reading."""
        return cls("instant", 0.0, None, "continuous", 0.0, source)


@dataclass(frozen=True)
class ScheduleBlock:
    """The fitted schedule over [t_from_ns, t_to_ns): events at ``phase_ns + k period_ns +
    curv_ns k^2`` (anchor frame; k relative to the block's reference event)."""

    t_from_ns: int
    t_to_ns: int
    phase_ns: float
    period_ns: float
    curv_ns: float
    n_changes: int
    consistent: float
    margin_ns: float
    residual_rms_ns: float


@dataclass(frozen=True)
class ScheduleFit:
    """A fitted conversion schedule, or a refusal (``ok`` False, ``reason`` says why).

    ``period_ns``: the median block period; ``consistent``: the fraction of all changes whose
    interval holds its fitted event within ``tol_ns``; ``residual_rms_ns``: RMS of the distance
    by which the fitted events miss their intervals (0 inside).
    """

    ok: bool
    reason: str
    latch: str
    nominal_ns: float
    period_ns: float
    consistent: float
    residual_rms_ns: float
    n_changes: int
    tol_ns: float
    blocks: tuple[ScheduleBlock, ...]

    @property
    def period_error(self) -> float:
        """Relative difference of the real period from the nominal one."""
        return self.period_ns / self.nominal_ns - 1.0

    def _block_of(self, t: npt.ArrayLike) -> npt.NDArray[np.intp]:
        starts = np.array([b.t_from_ns for b in self.blocks[1:]], dtype=np.int64)
        return np.searchsorted(starts, np.asarray(t, dtype=np.int64), "right")

    def latest_event(self, t_ns: npt.ArrayLike) -> F64:
        """The last fitted event at or before each ``t_ns`` (anchor frame, ns as float)."""
        t = np.asarray(t_ns, dtype=np.float64)
        bi = self._block_of(t)
        ph = np.array([b.phase_ns for b in self.blocks])[bi]
        pe = np.array([b.period_ns for b in self.blocks])[bi]
        cu = np.array([b.curv_ns for b in self.blocks])[bi]
        k = np.floor((t - ph) / pe)
        for _ in range(3):  # with curvature: correct k until t_k <= t < t_{k+1}
            tk = ph + k * pe + cu * k * k
            k = np.where(tk > t, k - 1, k)
            tk = ph + (k + 1) * pe + cu * (k + 1) ** 2
            k = np.where(tk <= t, k + 1, k)
        return ph + k * pe + cu * k * k

    def events_between(self, t0_ns: float, t1_ns: float) -> F64:
        """Every fitted event in [t0_ns, t1_ns)."""
        out: list[F64] = []
        for b in self.blocks:
            lo, hi = max(t0_ns, b.t_from_ns), min(t1_ns, b.t_to_ns)
            if hi <= lo:
                continue
            k = np.arange(math.floor((lo - b.phase_ns) / b.period_ns) - 2,
                          math.ceil((hi - b.phase_ns) / b.period_ns) + 3)  # fmt: skip
            tk = b.phase_ns + k * b.period_ns + b.curv_ns * k * k
            out.append(tk[(tk >= lo) & (tk < hi)])
        return np.concatenate(out) if out else np.empty(0)


def change_intervals(
    anchor_ns: npt.ArrayLike, values: npt.ArrayLike, latch: str = "continuous"
) -> tuple[I64, I64]:
    """(lo, hi] anchor-frame intervals in which a conversion ended, one per observed change.

    ``continuous``: where a value differs from the previous valid one.  ``wait``: every read is
    fresh, so every read is a change.  Invalid values (NaN) are skipped.
    """
    a = np.asarray(anchor_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if a.shape != v.shape:
        raise ValueError("anchor stamps and values differ in shape")
    ok = np.isfinite(v)
    a, v = a[ok], v[ok]
    if a.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ch = np.ones(a.size - 1, bool) if latch == "wait" else v[1:] != v[:-1]
    idx = np.flatnonzero(ch) + 1
    return a[idx - 1], a[idx]


def _refuse(reason: str, latch: str, nominal: float, n: int, tol: float,
            blocks: tuple[ScheduleBlock, ...] = (), period: float = math.nan,
            consistent: float = math.nan, rms: float = math.nan) -> ScheduleFit:
    return ScheduleFit(False, reason, latch, nominal, period, consistent, rms, n, tol, blocks)


def _rayleigh(mid: F64, periods: F64) -> F64:
    """Mean resultant length of the mid-points' phases for each candidate period."""
    out = np.empty(periods.size)
    for i in range(0, periods.size, 64):
        ph = (2 * np.pi) * mid[None, :] / periods[i:i + 64, None]
        out[i:i + 64] = np.hypot(np.cos(ph).mean(axis=1), np.sin(ph).mean(axis=1))
    return out


def _scan_period(mid: F64, nominal: float, tol: float) -> tuple[float, float]:
    """(period, resultant length) maximising the Rayleigh statistic within nominal x (1 +- tol)."""
    span = float(mid.max() - mid.min()) if mid.size else 0.0
    n_cyc = max(span / nominal, 1.0)
    step = 0.1 * nominal / n_cyc
    grid = np.arange(nominal * (1 - tol), nominal * (1 + tol) + step, step)
    if grid.size > 20000:  # a very long block: subsample the points instead of a huge grid
        grid = np.linspace(nominal * (1 - tol), nominal * (1 + tol), 20000)
    r = _rayleigh(mid, grid)
    best = float(grid[int(np.argmax(r))])
    fine = np.linspace(best - 2 * step, best + 2 * step, 41)
    rf = _rayleigh(mid, fine)
    i = int(np.argmax(rf))
    return float(fine[i]), float(rf[i])


def _violation(lo: F64, hi: F64, tk: F64) -> F64:
    """How far each event misses its interval (lo, hi]; 0 inside."""
    return np.maximum(np.maximum(lo - tk, tk - hi), 0.0)


def _fit_block(lo: F64, hi: F64, centre_period: float, tol_rel: float
               ) -> tuple[float, float, float, F64, float, float]:
    """Fit one block (times relative to the block's origin, ns), the period searched within
    ``centre_period x (1 +- tol_rel)``.  Returns (phase, period, curv, violations, margin,
    resultant length)."""
    mid = 0.5 * (lo + hi)
    period, r = _scan_period(mid, centre_period, tol_rel)
    z = np.exp(2j * np.pi * mid / period).sum()
    phase = float(np.angle(z)) / (2 * np.pi) * period
    centre = float(np.median(mid))
    phase += round((centre - phase) / period) * period  # the reference event near the centre
    curv = 0.0
    keep = np.ones(lo.size, bool)
    for _ in range(3):  # least squares on mid-points, outliers set aside
        k = np.rint((mid - phase) / period)
        phase, period, curv = _lsq_grid(k[keep], mid[keep])
        tk = phase + k * period + curv * k * k
        keep = _violation(lo, hi, tk) < 0.1 * period
        if keep.sum() < 4:
            break
    k = np.rint((mid - phase) / period)
    tk = phase + k * period + curv * k * k
    use = _violation(lo, hi, tk) < 0.1 * period
    margin = math.nan
    if use.sum() >= 4:
        # Chebyshev centre: maximise s with lo + s <= phase + k T + c k^2 <= hi - s
        ku = k[use]
        sc = max(float(np.abs(ku).max()), 1.0)  # k scaled to [-1, 1] for the solver
        x = np.column_stack([np.ones(ku.size), ku / sc, (ku / sc) ** 2])
        a_ub = np.vstack([np.column_stack([-x, np.ones(ku.size)]),
                          np.column_stack([x, np.ones(ku.size)])])  # fmt: skip
        b_ub = np.concatenate([-lo[use], hi[use]])
        res = linprog([0, 0, 0, -1], A_ub=a_ub, b_ub=b_ub,
                      bounds=[(None, None), (None, None), (None, None), (-period, period)],
                      method="highs")  # fmt: skip
        if res.status == 0:
            phase, period, curv, margin = (float(v) for v in res.x)
            period /= sc
            curv /= sc * sc
    tk = phase + k * period + curv * k * k
    return phase, period, curv, _violation(lo, hi, tk), margin, r


def _lsq_grid(k: F64, t: F64) -> tuple[float, float, float]:
    """Least squares t = phase + k T + c k^2 (k scaled for conditioning)."""
    sc = max(float(np.abs(k).max()), 1.0)
    x = np.column_stack([np.ones(k.size), k / sc, (k / sc) ** 2])
    sol, *_ = np.linalg.lstsq(x, t, rcond=None)
    return float(sol[0]), float(sol[1]) / sc, float(sol[2]) / sc**2


def _multiple_of_cycle(lo: F64, hi: F64, phase: float, period: float, curv: float) -> int:
    """m > 1 when every spacing between consecutive changes is a multiple of m cycles."""
    mid = 0.5 * (lo + hi)
    k = np.rint((mid - phase) / period)
    g = np.diff(np.unique(k)).astype(np.int64)
    g = g[g > 0]
    if g.size < 10:
        return 1
    for m in range(8, 1, -1):
        if np.mean(g % m == 0) > 0.95:
            return m
    return 1


def fit_schedule(  # noqa: PLR0911  (each refusal returns its reason)
    anchor_ns: npt.ArrayLike,
    values: npt.ArrayLike,
    model: ReadingModel,
    *,
    block_s: float = 3.0,
    tol_ns: float = 25_000.0,
    min_changes: int = 40,
    min_consistent: float = 0.85,
    max_jump: float = 0.005,
    osc_tolerance: float = OSC_TOLERANCE,
) -> ScheduleFit:
    """Fit the conversion schedule of one channel from its reads (see the module docstring).

    ``anchor_ns``: each read's stamp (read start for ``continuous``, read end for ``wait``, or the
    pass mid-point for old data), sorted; ``values``: what each read returned.  Blocks hold
    ``block_s`` seconds of changes (merged forward while they have fewer than ``min_changes``).
    Refused (``ok`` False) when: fewer than ``min_changes`` changes in all; a block's consistent
    fraction is below ``min_consistent``; the period is outside ``osc_tolerance`` of nominal;
    adjacent blocks' periods differ by more than ``max_jump`` (relative); the changes come at
    multiples of the cycle only, or more often than once a cycle.
    """
    if model.kind != "window" or model.cycle_ns is None:
        raise ValueError(f"fit_schedule needs a scheduled window-mean reading model, got {model}")
    latch = model.latch
    nominal = float(model.cycle_ns)
    a = np.asarray(anchor_ns, dtype=np.int64)
    if a.size > 1 and np.any(np.diff(a) < 0):
        return _refuse("read stamps are not in time order", latch, nominal, 0, tol_ns)
    lo_i, hi_i = change_intervals(a, values, latch)
    n_all = int(lo_i.size)
    if n_all < min_changes:
        return _refuse(f"only {n_all} value changes in {a.size} reads (need >= {min_changes}): "
                       "too few conversions seen to fit a schedule", latch, nominal, n_all,
                       tol_ns)  # fmt: skip
    span = float(a[-1] - a[0])
    # more changes than cycles: the chip converts faster than the model's cycle
    if n_all > 1.15 * span / (nominal * (1 - osc_tolerance)) + 5:
        return _refuse(f"{n_all} value changes in {span * 1e-9:.2f} s: more than one per "
                       f"nominal {nominal * 1e-6:.3f} ms cycle; the chip's configuration "
                       "(conversion "
                       "time, enabled channels) is not the one the reading model describes",
                       latch, nominal, n_all, tol_ns)  # fmt: skip
    wide = (hi_i - lo_i) < 0.85 * nominal * (1 - osc_tolerance)
    lo_i, hi_i = lo_i[wide], hi_i[wide]
    # overlapping fits: each spans block_s and is used for the central third of its span only
    step = block_s * 1e9 / 3
    centres = np.arange(float(a[0]) + step / 2, float(a[-1]) + step / 2, step)
    fits: list[tuple[float, float, float, float, float, int, float, F64]] = []
    for c in centres:
        half = 0.5 * block_s * 1e9
        while True:
            i0, i1 = np.searchsorted(hi_i, [c - half, c + half])
            if i1 - i0 >= min_changes or half > span:
                break
            half *= 2
        if i1 - i0 < max(4, min_changes // 2):
            continue
        origin = int(lo_i[i0])
        lo = (lo_i[i0:i1] - origin).astype(np.float64)
        hi = (hi_i[i0:i1] - origin).astype(np.float64)
        # the first fit searches the oscillator's whole tolerance; later ones near the last period
        # (a jump beyond that leaves their changes unexplained: refused below)
        prev = fits[-1][2] if fits else None
        phase, period, curv, viol, margin, _r = _fit_block(
            lo, hi, nominal if prev is None else prev, osc_tolerance if prev is None
            else 4 * max_jump)  # fmt: skip
        m = _multiple_of_cycle(lo, hi, phase, period, curv)
        if m > 1:
            return _refuse(f"values change only every {m} cycles of the nominal "
                           f"{nominal * 1e-6:.3f} ms around t={(c - a[0]) * 1e-9:.3f} s into the "
                           "trace: the chip averages or converts more slowly than the reading "
                           "model says (update_interval, samples)", latch, nominal, n_all,
                           tol_ns)  # fmt: skip
        # the fit's own central part: its viol counts toward the totals
        own = (hi_i[i0:i1] >= c - step / 2) & (hi_i[i0:i1] < c + step / 2)
        fits.append((c, phase + origin, period, curv, margin, int(own.sum()),
                     float(np.sqrt(np.mean(viol**2))), viol[own]))  # fmt: skip
    blocks: list[ScheduleBlock] = []
    viol_all: list[F64] = []
    for i, (c, phase, period, curv, margin, n_own, rms_b, v_own) in enumerate(fits):
        t_from = int(a[0]) if i == 0 else int(0.5 * (fits[i - 1][0] + c))
        t_to = int(a[-1]) + 1 if i == len(fits) - 1 else int(0.5 * (c + fits[i + 1][0]))
        cons = float(np.mean(v_own <= tol_ns)) if v_own.size else 1.0
        blocks.append(ScheduleBlock(t_from, t_to, phase, period, curv, n_own, cons, margin,
                                    rms_b))  # fmt: skip
        viol_all.append(v_own)
    if not blocks:
        return _refuse("no block with enough changes to fit", latch, nominal, n_all, tol_ns)
    bl = tuple(blocks)
    viol = np.concatenate(viol_all)
    consistent = float(np.mean(viol <= tol_ns))
    rms = float(np.sqrt(np.mean(viol**2)))
    periods = np.array([b.period_ns for b in bl])
    period = float(np.median(periods))
    args = (latch, nominal, n_all, tol_ns, bl, period, consistent, rms)
    if abs(period / nominal - 1) > osc_tolerance:
        return _refuse(f"fitted period {period * 1e-6:.4f} ms is {period / nominal - 1:+.1%} off "
                       f"the nominal {nominal * 1e-6:.4f} ms (tolerance +-{osc_tolerance:.0%})",
                       *args)  # fmt: skip
    jumps = np.abs(np.diff(periods)) / periods[:-1]
    if jumps.size and jumps.max() > max_jump:
        i = int(np.argmax(jumps))
        return _refuse(f"the period jumps from {periods[i] * 1e-6:.4f} to "
                       f"{periods[i + 1] * 1e-6:.4f} ms at t={bl[i + 1].t_from_ns * 1e-9:.3f} s: "
                       "the configuration changed mid-run", *args)  # fmt: skip
    worst = min(bl, key=lambda b: b.consistent)
    if worst.consistent < min_consistent:
        return _refuse(f"only {worst.consistent:.0%} of the changes in "
                       f"[{worst.t_from_ns * 1e-9:.3f}, {worst.t_to_ns * 1e-9:.3f}] s fit one "
                       "schedule: the configuration changed mid-run or the chip is not "
                       "converting on a fixed cycle", *args)  # fmt: skip
    return ScheduleFit(True, "", latch, nominal, period, consistent, rms, n_all, tol_ns, bl)
