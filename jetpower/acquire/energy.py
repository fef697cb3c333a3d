"""The one rule for the energy of a time window, used by the manifest, ``sample`` and the report.

**The rule.**  Power between two consecutive valid samples is interpolated: linearly
(``"trapezoid"``, for power sampled at instants) or held at the later sample's value (``"hold"``,
for power derived from an energy counter's differences, which is the mean over (previous sample,
this sample]: integrated so, it gives back the counter's energy exactly).  A window's energy is
the integral of that interpolant over exactly ``[start, end]``: the segments that straddle an edge
are cut at the edge, so a window is neither shortened to its first and last sample nor
extrapolated beyond the samples around it.  An invalid reading is skipped: the interpolant
bridges it, as it bridges the time between any two samples (a long hole is the sampler-health
checks' business, not this rule's).  ``span`` is the time actually covered; a window the samples
do not cover entirely has ``span < end - start`` (it is never filled in).

Two drivers apply it: :func:`integrate` to arrays (the samples file, the report) and
:class:`Integrator` to a stream of readings as they are drained (a phase while it runs).  Both go
through :func:`_segments`, so they cannot disagree.

Counter method (NVML, RAPL): the counter advances in steps; its value at any instant is
interpolated linearly between the samples where it stepped (power taken as constant between
steps); a window's counter energy is that value at the window's end minus its value at the start.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jetpower.acquire import samples_csv
from jetpower.acquire.decode import counter_delta

F64 = npt.NDArray[np.float64]

#: how a power series is integrated (see the module docstring)
INTEGRATION_RULES = ("trapezoid", "hold")

METHOD = (
    "integral: power between consecutive valid samples interpolated (trapezoid; power derived "
    "from counters is held over each step) and integrated over exactly [start, end] on "
    "CLOCK_MONOTONIC, segments cut at the edges; counter: the energy counter interpolated "
    "linearly between the samples where it stepped, taken at start and end, summed over the "
    "total's rails"
)


def _check_rule(rule: str) -> bool:
    if rule not in INTEGRATION_RULES:
        raise ValueError(f"integration rule {rule!r}: expected one of {INTEGRATION_RULES}")
    return rule == "hold"


def _segments(t0: F64, p0: F64, t1: F64, p1: F64, start: float, end: float,
              hold: bool) -> tuple[F64, F64]:
    """(energy, covered time) of segments (t0, p0) -> (t1, p1) cut to [start, end]."""
    a = np.clip(t0, start, end)
    b = np.clip(t1, start, end)
    width = np.where(np.isfinite(p0) & np.isfinite(p1), b - a, 0.0)
    if hold:
        height = np.where(width > 0, p1, 0.0)
    else:
        dt = t1 - t0
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(dt > 0, (p1 - p0) / dt, 0.0)
        pa = p0 + slope * (a - t0)
        pb = p0 + slope * (b - t0)
        height = np.where(width > 0, (pa + pb) * 0.5, 0.0)
    return height * width, width


@dataclass(frozen=True)
class Integral:
    """A window's integral: energy in (power unit x time unit), samples inside, time covered."""

    energy: float
    samples: int
    span: float
    mean: float | None  # arithmetic mean of the valid samples inside (None: none)


def integrate(t: npt.ArrayLike, p: npt.ArrayLike, start: float, end: float,
              rule: str = "trapezoid") -> Integral:
    """The window ``[start, end]`` of the series ``(t, p)`` (``t`` sorted; NaN: invalid)."""
    hold = _check_rule(rule)
    tt = np.asarray(t, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(pp)
    if not ok.all():
        tt, pp = tt[ok], pp[ok]
    lo = int(np.searchsorted(tt, start, "left"))
    hi = int(np.searchsorted(tt, end, "right"))
    a, b = max(lo - 1, 0), min(hi + 1, tt.size)
    valid = pp[lo:hi]
    mean = float(valid.mean()) if valid.size else None
    if b - a < 2 or end <= start:
        return Integral(0.0, int(valid.size), 0.0, mean)
    # relative to the window's start: keeps ns stamps exact in float64
    ts = tt[a:b] - start
    e, w = _segments(ts[:-1], pp[a:b - 1], ts[1:], pp[a + 1:b], 0.0, end - start, hold)
    return Integral(float(e.sum()), int(valid.size), float(w.sum()), mean)


class Integrator:
    """:func:`integrate` over a stream: feed every reading (:meth:`add`) in time order, from
    before the window's start to past its end; the figures are those of ``[start_ns, end_ns]``.

    ``end_ns`` may be set late (a phase ends when it ends); readings past it only close the last
    segment.  Without ``start_ns`` the window starts at the first reading.
    """

    __slots__ = ("count", "end_ns", "energy_uj", "first_ns", "hold", "invalid", "last_ns",
                 "prev", "span_ns", "start_ns", "sum_uw")

    def __init__(self, rule: str = "trapezoid", start_ns: int | None = None,
                 end_ns: int | None = None) -> None:
        self.hold = _check_rule(rule)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.count = 0
        self.invalid = 0
        self.sum_uw = 0.0
        self.energy_uj = 0.0
        self.span_ns = 0.0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.prev: tuple[int, float] | None = None

    def add(self, t_ns: int, uw: float | None) -> None:
        self.add_many([t_ns], [uw])

    def add_many(self, t_ns: Sequence[int] | npt.NDArray[np.int64],
                 uw: Sequence[float | None] | F64) -> None:
        """Feed a batch of readings, in time order (one vectorised step per batch)."""
        if not len(t_ns):
            return
        t = np.asarray(t_ns, dtype=np.int64)
        p = uw.astype(np.float64) if isinstance(uw, np.ndarray) else \
            np.array([np.nan if v is None else v for v in uw], dtype=np.float64)
        if self.start_ns is None:
            self.start_ns = int(t[0])
        start, end = self.start_ns, self.end_ns
        ok = np.isfinite(p)
        self.invalid += int((~ok[(t >= start) & ((t <= end) if end is not None else True)]).sum())
        t, p = t[ok], p[ok]
        if not t.size:
            return
        if self.prev is not None:
            t = np.concatenate([[self.prev[0]], t])
            p = np.concatenate([[self.prev[1]], p])
        rel = (t - start).astype(np.float64)
        hi = float(end - start) if end is not None else float(max(rel[-1], 0.0))
        if rel.size >= 2:
            e, w = _segments(rel[:-1], p[:-1], rel[1:], p[1:], 0.0, hi, self.hold)
            self.energy_uj += float(e.sum()) / 1e9
            self.span_ns += float(w.sum())
        new_t, new_p = (t[1:], p[1:]) if self.prev is not None else (t, p)
        self.prev = (int(t[-1]), float(p[-1]))
        keep = (new_t >= start) & ((new_t <= end) if end is not None else True)
        kt, kp = new_t[keep], new_p[keep]
        if kt.size:
            if self.first_ns is None:
                self.first_ns = int(kt[0])
            self.last_ns = int(kt[-1])
            self.count += int(kt.size)
            self.sum_uw += float(kp.sum())

    @property
    def mean_uw(self) -> float | None:
        return self.sum_uw / self.count if self.count else None

    @property
    def span_s(self) -> float:
        return self.span_ns / 1e9


class CounterEnergy:
    """Energy from an energy counter over a stream: wrap-aware sum of the differences between the
    valid samples fed (first to last).

    Any number of wrap-arounds is undone, provided two consecutive valid samples are less than
    one wrap apart (RAPL: minutes even at full load).  A missing reading does not break the
    series (the next difference spans it); a counter that goes back without a known wrap (a
    driver reload) is counted in ``resets`` and that step is left out.
    """

    __slots__ = (
        "count", "energy_uj", "first_ns", "invalid", "last_ns", "prev", "resets", "wrap_uj",
    )

    def __init__(self, wrap_uj: int | None = None) -> None:
        self.wrap_uj = wrap_uj
        self.count = 0
        self.invalid = 0
        self.resets = 0
        self.energy_uj = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.prev: int | None = None

    def add(self, t_ns: int, counter_uj: int | None) -> None:
        if counter_uj is None:
            self.invalid += 1
            return
        if self.prev is not None:
            d = counter_delta(self.prev, counter_uj, self.wrap_uj)
            if d is None:
                self.resets += 1
            else:
                self.energy_uj += d
        if self.first_ns is None:
            self.first_ns = t_ns
        self.last_ns = t_ns
        self.count += 1
        self.prev = counter_uj

    @property
    def span_s(self) -> float:
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9

    @property
    def mean_uw(self) -> float | None:
        """Mean power over the span (energy / time), None with fewer than two samples."""
        return self.energy_uj / self.span_s if self.count > 1 and self.span_s > 0 else None


# -- windows of the samples file (the manifest's per-model figures) ---------------------------


@dataclass(frozen=True)
class Series:
    """The part of a samples file the window figures need."""

    t: list[int]
    total: F64
    counters: dict[str, list[int | None]]
    torn: int = 0


def read_segment(path: Path, offset: int, counter_rails: Sequence[str]) -> Series:
    """The samples written at or after byte ``offset`` of a samples file (a cut last row is left
    out; see :func:`jetpower.acquire.samples_csv.read`)."""
    s = samples_csv.read(path, offset=offset, want=("total_uW",),
                         optional=[f"{r}_uJ" for r in counter_rails])
    counters: dict[str, list[int | None]] = {}
    for r in counter_rails:
        col = s.values.get(f"{r}_uJ")
        if col is not None:
            counters[r] = [None if np.isnan(v) else int(v) for v in col.tolist()]
    return Series(s.t_ns.tolist(), s.values["total_uW"], counters, s.torn)


def _unwrapped(values: list[int | None], wrap: int | None) -> list[float | None]:
    out: list[float | None] = []
    acc = 0.0
    prev: int | None = None
    for v in values:
        if v is None:
            out.append(None)
            continue
        if prev is not None:
            d = counter_delta(prev, v, wrap)
            acc += d if d is not None else 0
        prev = v
        out.append(acc)
    return out


def _steps(t: list[int], acc: list[float | None]) -> tuple[list[int], list[float]]:
    """Times and values at which the (unwrapped) counter took a new value."""
    st: list[int] = []
    sv: list[float] = []
    for ti, v in zip(t, acc):
        if v is None:
            continue
        if not sv or v != sv[-1]:
            st.append(ti)
            sv.append(v)
    return st, sv


def _at(st: list[int], sv: list[float], t: int) -> float | None:
    """The counter at time ``t``, linear between steps; None outside the steps seen."""
    k = bisect.bisect_right(st, t)
    if k == 0 or k == len(st):
        return None
    t0, t1 = st[k - 1], st[k]
    return sv[k - 1] + (sv[k] - sv[k - 1]) * (t - t0) / (t1 - t0)


def window_energies(series: Series, windows: Mapping[str, tuple[int, int]],
                    wraps: Mapping[str, int | None],
                    rule: str = "trapezoid") -> dict[str, dict[str, Any]]:
    """Per window: samples, mean power, energy by :func:`integrate` and (where possible) counter
    energy over the same ``[start, end]``."""
    steps = {r: _steps(series.t, _unwrapped(v, wraps.get(r))) for r, v in series.counters.items()}
    t = np.asarray(series.t, dtype=np.int64)
    out: dict[str, dict[str, Any]] = {}
    for name, (start, end) in windows.items():
        ig = integrate(t - start, series.total, 0.0, float(end - start), rule)
        fig: dict[str, Any] = {
            "start_ns": start, "end_ns": end, "samples": ig.samples,
            "avg_power_uw": ig.mean, "energy_uj": ig.energy / 1e9, "span_s": ig.span / 1e9,
        }
        if steps:
            parts = []
            for st, sv in steps.values():
                a, b = _at(st, sv, start), _at(st, sv, end)
                parts.append(None if a is None or b is None else b - a)
            if all(p is not None for p in parts):
                counter = float(sum(p for p in parts if p is not None))
                fig["counter_energy_uj"] = counter
                if fig["energy_uj"]:
                    ratio = fig["energy_uj"] / counter - 1 if counter else None
                    fig["trapezoid_vs_counter"] = ratio
        out[name] = fig
    return out
