"""The energy maths: idle baseline, per-model figures over the timing pass, per-layer attribution.

Inputs are the dataset's units (seconds, microwatts); outputs are SI (W, J, s).  Every figure
carries the number of samples behind it and the half-width of its 95 % interval (batch means, see
:mod:`jetpower.report.stats`).

Per-model energy per inference is the trapezoid integral of net power over the timing-pass window,
divided by the number of timed runs.  Inclusion rule: samples with start <= t <= end, plus the
power linearly interpolated at both window edges, so the integral covers exactly [start, end].

Per-layer energy: a layer runs for tens of microseconds, far below the sensor's ~7 ms conversion,
so no sample "belongs" to one execution.  Over many profiled runs, though, the samples that fall in
a layer's windows (half-open [end - latency, end)) are a random draw of the power while that layer
runs.  Estimate: E = (mean net power of those samples) x (mean layer latency).  Below
``min_samples`` samples no estimate is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from jetpower.acquire.energy import integrate
from jetpower.report.stats import N_BATCHES, batch_means_halfwidth, ratio_batch_halfwidth

F64 = npt.NDArray[np.float64]
#: fewest samples in a layer's windows for an energy estimate
MIN_LAYER_SAMPLES = 30


@dataclass(frozen=True)
class Baseline:
    """Idle power, W, with its interval and origin."""

    power_w: float
    ci_w: float
    n_samples: int
    source: str


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of a latency series, in seconds."""

    n: int
    mean: float
    ci: float
    median: float
    p5: float
    p95: float


@dataclass(frozen=True)
class WindowPower:
    """Power over one window: time-weighted mean (trapezoid), gross and net of idle."""

    start: float
    end: float
    n_samples: int
    energy_gross_j: float
    mean_gross_w: float
    mean_net_w: float
    ci_gross_w: float
    ci_net_w: float


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's attributed power and energy per execution (``energy_j`` None when refused)."""

    name: str
    n_windows: int
    n_samples: int
    latency_mean_s: float
    mean_gross_w: float
    mean_net_w: float
    ci_net_w: float
    energy_j: float | None
    ci_energy_j: float | None
    note: str = ""
    #: the estimator behind energy_j ("in-window" here; report/layer_energy.py names the others)
    method: str = "in-window"


def latency_stats(x: npt.ArrayLike) -> LatencyStats:
    """Mean (batch-means interval), median, 5th and 95th percentile of a latency series."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        nan = math.nan
        return LatencyStats(0, nan, nan, nan, nan, nan)
    p5, med, p95 = np.percentile(a, [5, 50, 95])
    return LatencyStats(
        int(a.size), float(a.mean()), batch_means_halfwidth(a), float(med), float(p5), float(p95)
    )


def trapezoid_energy(t: F64, p_uw: F64, start: float, end: float,
                     rule: str = "trapezoid") -> tuple[float, int]:
    """(integral of power in J over [start, end], samples inside), by the one window rule
    (:func:`jetpower.acquire.energy.integrate`); ``t`` in seconds, sorted.

    A window the samples do not cover from its first to its last instant gives NaN.
    """
    if t.size < 2 or end <= start or t[0] > start or t[-1] < end:
        lo = int(np.searchsorted(t, start, "left"))
        return math.nan, int(np.searchsorted(t, end, "right")) - lo
    ig = integrate(t, p_uw, start, end, rule)
    return ig.energy * 1e-6, ig.samples


def window_power(
    t: F64, p_uw: F64, start: float, end: float, idle: Baseline, *, n_batches: int = N_BATCHES,
    rule: str = "trapezoid",
) -> WindowPower:
    """Mean power over [start, end], gross and net of ``idle``, with batch-means intervals."""
    e, n = trapezoid_energy(t, p_uw, start, end, rule)
    dur = end - start
    gross = e / dur if dur > 0 else math.nan
    lo = int(np.searchsorted(t, start, "left"))
    hi = int(np.searchsorted(t, end, "right"))
    inside = p_uw[lo:hi]
    hw = batch_means_halfwidth(inside, n_batches) * 1e-6
    return WindowPower(
        start, end, n, e, gross, gross - idle.power_w, hw, math.hypot(hw, idle.ci_w)
    )


def attribute_layers(
    samples_t: npt.ArrayLike,
    samples_p_uw: npt.ArrayLike,
    layer_windows: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    idle_uw: float,
    *,
    idle_ci_uw: float = 0.0,
    min_samples: int = MIN_LAYER_SAMPLES,
    n_batches: int = N_BATCHES,
) -> list[LayerEnergy]:
    """Attribute power and energy to layers from the samples inside their windows.

    ``samples_t`` (s, sorted) and ``samples_p_uw`` (uW) are the power trace; ``layer_windows``
    maps each layer to (start, end) arrays in seconds on the same clock, one entry per profiled
    run, in run (time) order.  Net power = gross - ``idle_uw``; its interval adds the idle
    interval ``idle_ci_uw`` in quadrature.  Energy = mean net power x mean window length; its
    interval combines the relative intervals of both factors.  Layers with fewer than
    ``min_samples`` samples get ``energy_j = None`` and a note.
    """
    t = np.asarray(samples_t, dtype=np.float64)
    p = np.asarray(samples_p_uw, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError("samples_t and samples_p_uw differ in shape")
    csum = np.concatenate([[0.0], np.cumsum(p)])
    out: list[LayerEnergy] = []
    for name, (s_like, e_like) in layer_windows.items():
        start = np.asarray(s_like, dtype=np.float64)
        end = np.asarray(e_like, dtype=np.float64)
        lo = np.searchsorted(t, start, "left")
        hi = np.searchsorted(t, end, "left")
        counts = (hi - lo).astype(np.int64)
        sums = csum[hi] - csum[lo]
        n = int(counts.sum())
        dur = end - start
        lat = float(dur.mean()) if dur.size else math.nan
        lat_hw = batch_means_halfwidth(dur, n_batches)
        if n == 0:
            out.append(LayerEnergy(name, int(start.size), 0, lat, math.nan, math.nan, math.nan,
                                   None, None, "no samples in its windows"))
            continue
        gross = float(sums.sum()) / n * 1e-6
        net = gross - idle_uw * 1e-6
        hw_p = ratio_batch_halfwidth(sums, counts, n_batches) * 1e-6
        hw_net = math.hypot(hw_p, idle_ci_uw * 1e-6)
        if n < min_samples:
            out.append(LayerEnergy(name, int(start.size), n, lat, gross, net, hw_net, None, None,
                                   f"only {n} samples (< {min_samples}): no estimate"))
            continue
        energy = net * lat
        rel = math.hypot(hw_net / net if net else math.inf, lat_hw / lat if lat else math.inf)
        out.append(LayerEnergy(name, int(start.size), n, lat, gross, net, hw_net, energy,
                               abs(energy) * rel))
    return out


def idle_baseline(
    t: F64,
    p_uw: F64,
    window: tuple[float, float] | None,
    *,
    manifest_uw: float | None,
    file_uw: float | None,
    n_batches: int = N_BATCHES,
) -> tuple[Baseline, F64]:
    """The idle baseline and the idle samples it rests on (empty when none are on disk).

    Preference: the samples of the idle phase (mean and batch-means interval); else the manifest's
    figure; else ``idling_power.json`` (no interval known: 0).
    """
    if window is not None and t.size:
        lo = int(np.searchsorted(t, window[0], "left"))
        hi = int(np.searchsorted(t, window[1], "right"))
        s = p_uw[lo:hi]
        if s.size >= 2:
            hw = batch_means_halfwidth(s, n_batches)
            return Baseline(float(s.mean()) * 1e-6, hw * 1e-6, int(s.size), "idle-phase samples"), s
    empty = np.empty(0)
    if manifest_uw is not None:
        return Baseline(manifest_uw * 1e-6, 0.0, 0, "manifest idle.avg_power_uw"), empty
    if file_uw is not None:
        return Baseline(file_uw * 1e-6, 0.0, 0, "idling_power.json avg_idle_power"), empty
    return Baseline(0.0, 0.0, 0, "none found: net = gross"), empty
