"""What a sensor setting allows for per-layer energy: an estimate, from the reading model.

Each distinct conversion of the total rail's current is one equation of the per-layer
least-squares fit (``report/deconvolve.py``): its value is the mean power over its window of
length ``W``.  A layer of duration ``d`` that a window overlaps by ``o`` enters that equation
with weight ``o / W``; over a run, with conversion ends at random phase against the layer and
one equation per ``P_eff`` (the cycle ``P``, or the read period when reads are slower), the
expected information about the layer's power is

    I(d) = g(d, W) / P_eff,   g = d^2 / W - d^3 / (3 W^2)   (d <= W),   d - W / 3   (d >= W)

(the integral of ``(o / W)^2`` over the window's position).  With ``N`` profiled runs, per-
equation noise ``sigma`` and a layer drawing ``x`` W (net of idle), the layer's relative error
has a median of about

    0.6745 sigma / (x sqrt(N I(d)))

so the runs needed for a median error ``e`` are ``N = (0.6745 sigma / (e x))^2 P_eff / g(d, W)``.
``sigma`` lumps together what is not in the formula: quantisation and ADC noise, the spread of
each execution's power, placement error of the windows, and above all the confounding of a layer
with its neighbours (they share the same windows).  It is calibrated on the INA3221 emulation
of the tests (``tests/ina3221_truth.py``, resnet18-like layers of 11-500 us at 1.5-9 W, read
by ``report/deconvolve.py``), where it came out between 0.46 and 0.81 W over six
configurations (3 channels x 1100 us at 1 kHz down to 1 channel x 140 us at 4 kHz; 1000 and
3000 runs) whose median errors spanned 0.6 % to 6.5 %: the scaling holds within about a factor 2
in runs.  Two conditions the formula does not cover: the schedule fit needs reads faster than
the channel's conversions (it failed at 1 kHz on a 0.29 and a 1.2 ms cycle, and worked at
R x P = 1.1 and above with faster reads); and a driver that waits for a fresh conversion before
every read (JetPack 5) has a timing of its own.
"""

from __future__ import annotations

import math
from typing import Any

from jetpower.sensors import SensorSet

#: per-equation noise, calibrated on the emulation (see the module doc), W
SIGMA_EFF_W = 0.65
#: the net power of the layer the figures are stated for (they scale as 1 / x^2), W
ASSUMED_LAYER_W = 3.0
#: the median relative error the figures are stated for
TARGET = 0.05
#: layer durations a table is given for, us
DURATIONS_US = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
_Z50 = 0.6745  # median of |N(0, 1)|
#: conversion windows a layer needs before the estimator gives it a figure (deconvolve's)
MIN_EQUATIONS = 20


def overlap_integral(d_us: float, window_us: float) -> float:
    """``g(d, W)``: the integral of (overlap / W)^2 over the window's position, us."""
    d, w = d_us, window_us
    return d * d / w - d**3 / (3 * w * w) if d <= w else d - w / 3


def runs_needed(d_us: float, window_us: float, eq_period_us: float, *,
                target: float = TARGET, layer_w: float = ASSUMED_LAYER_W,
                sigma_w: float = SIGMA_EFF_W) -> float:
    """Profiled runs for a median relative error ``target`` on a layer of ``d_us``."""
    g = overlap_integral(d_us, window_us)
    floor = MIN_EQUATIONS * eq_period_us / (d_us + window_us)  # the estimator's least
    return max((_Z50 * sigma_w / (target * layer_w)) ** 2 * eq_period_us / g, floor)


def shortest_layer_us(runs: int, window_us: float, eq_period_us: float, *,
                      target: float = TARGET, layer_w: float = ASSUMED_LAYER_W,
                      sigma_w: float = SIGMA_EFF_W) -> float:
    """The shortest layer that ``runs`` profiled runs bring to ``target`` (bisection on ``d``)."""
    need_g = (_Z50 * sigma_w / (target * layer_w)) ** 2 * eq_period_us / runs
    lo, hi = 0.0, max(window_us, need_g + window_us)
    for _ in range(100):
        mid = (lo + hi) / 2
        if overlap_integral(mid, window_us) < need_g:
            lo = mid
        else:
            hi = mid
    return hi


def rail_allowance(label: str, model: Any, rate_hz: float, runs: int) -> dict[str, Any]:
    """The figures for one rail's current reading model (``sensors._types.ReadingModel``)."""
    out: dict[str, Any] = {"rail": label, "kind": model.kind}
    sched = model.schedule
    if model.kind != "window_mean" or sched is None or not model.window_us:
        out["note"] = {
            "instant": "point-like readings: each read is one sample of the power at its "
                       "moment; the per-layer error falls as 1/sqrt(reads inside the layer)",
            "counter": "an energy counter: per-layer power is identifiable only where its "
                       "refresh period is shorter than the layers",
        }.get(model.kind, "no conversion schedule known: no per-layer estimate of the error")
        return out
    window, period = float(model.window_us), float(sched.period_us)
    read_period = 1e6 / rate_hz if rate_hz > 0 else 0.0
    eq_period = max(period, read_period)
    out.update(window_us=window, period_us=period, rate_hz=rate_hz,
               equations_per_s=round(1e6 / eq_period, 1),
               runs_for_target={f"{d:g}": math.ceil(runs_needed(d, window, eq_period))
                                for d in DURATIONS_US},
               shortest_layer_us_at_runs=round(shortest_layer_us(runs, window, eq_period), 1),
               runs=runs)
    if read_period > period / 1.1:
        out["warning"] = (f"reads every {read_period:.0f} us are not faster than the "
                          f"{period:.0f} us conversion cycle: the schedule fit needs them to "
                          f"be (raise sampler.rate_hz above {1.1e6 / period:.0f}, or read "
                          "fewer files)")
    return out


def allowance(sensor: SensorSet, *, rate_hz: float = 1000.0, runs: int = 30000,
              target: float = TARGET) -> dict[str, Any]:
    """Per total rail: what the setting in force allows (see the module doc for the model)."""
    rails = []
    for rail in sensor.rails:
        if rail.label in sensor.total.rails and rail.current is not None:
            rails.append(rail_allowance(rail.label, rail.current.model, rate_hz, runs))
    return {
        "method": "information per profiled run from the conversion windows' overlap with a "
                  "layer, per-equation noise calibrated on the INA3221 emulation",
        "assumptions": {
            "target_median_error": target, "layer_net_w": ASSUMED_LAYER_W,
            "sigma_eff_w": SIGMA_EFF_W, "rate_hz": rate_hz,
            "scaling": "runs scale as (sigma / (error x layer power))^2 x cycle / g(d, W)",
            "accuracy": "within about a factor 2 in runs on the emulation (0.6-6.5 % median "
                        "errors over six configurations)",
        },
        "rails": rails,
    }


def summary_lines(found: dict[str, Any]) -> list[str]:
    """The human-readable lines of :func:`allowance`'s result."""
    a = found["assumptions"]
    out = []
    for r in found["rails"]:
        if "runs_for_target" not in r:
            out.append(f"per-layer ({r['rail']}): {r.get('note', '')}")
            continue
        need = r["runs_for_target"]
        pct = f"{a['target_median_error']:.0%}"
        out.append(f"per-layer ({r['rail']}: {r['window_us']:g} us windows every "
                   f"{r['period_us']:g} us, reads at {a['rate_hz']:g} Hz): for {pct} median "
                   f"error a layer of " + ", ".join(f"{d} us needs ~{n:,} runs"
                                                    for d, n in need.items()))
        out.append(f"  at {r['runs']:,} profiled runs, layers shorter than "
                   f"{r['shortest_layer_us_at_runs']:g} us miss {pct}")
        if "warning" in r:
            out.append(f"  warning: {r['warning']}")
    if out:
        out.append(f"  (an estimate: a layer drawing {a['layer_net_w']:g} W net, runs scale as "
                   f"1/power^2; per-equation noise {a['sigma_eff_w']:g} W calibrated on the "
                   "INA3221 emulation; within ~2x in runs there)")
    return out
