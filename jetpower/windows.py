"""Energy of time windows from the run's samples file: trapezoid and, where a counter exists, the
counter's difference, side by side.

A worker's phases (its timing pass above all) are known only once it reports them, after their
samples have streamed past; so the figures are computed afterwards, from the part of
``jetpower_samples.csv`` written while the model ran (from a byte offset).

Counter method: an energy counter advances in steps (NVML: every ~100 ms; the sampler sees a step
at the first poll after it).  The counter's value at any instant is interpolated linearly between
the samples where it stepped, i.e. power is taken as constant between steps; the window's counter
energy is that value at the window's last sample minus its value at the first, the same span the
trapezoid covers.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetpower.sampler.stream import SAMPLES_HEADER_LINE, Integrator, _counter_delta

METHOD = (
    "integral: power samples with start <= t <= end, integrated over CLOCK_MONOTONIC from the "
    "first to the last (trapezoid; power derived from counters is held over each step); "
    "counter: the energy counter interpolated linearly between the samples where it stepped, "
    "taken at the same first and last sample, summed over the total's rails"
)


@dataclass
class _Series:
    t: list[int] = field(default_factory=list)
    total: list[float | None] = field(default_factory=list)
    counters: dict[str, list[int | None]] = field(default_factory=dict)


def read_segment(path: Path, offset: int, counter_rails: Sequence[str]) -> _Series:
    """The samples written at or after byte ``offset`` of a samples CSV."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\n")
        if first != SAMPLES_HEADER_LINE:
            raise ValueError(f"{path}: not a jetpower samples file (first line {first!r})")
        columns = f.readline().rstrip("\n").split(",")
        if offset > f.tell():
            f.seek(offset)
        text = f.read()
    it = columns.index("total_uW")
    ic = {r: columns.index(f"{r}_uJ") for r in counter_rails if f"{r}_uJ" in columns}
    s = _Series(counters={r: [] for r in ic})
    for line in text.splitlines():
        cells = line.split(",")
        if len(cells) != len(columns):
            continue  # a line cut short at the end of a file still being written
        s.t.append(int(cells[0]))
        s.total.append(float(cells[it]) if cells[it] else None)
        for r, k in ic.items():
            s.counters[r].append(int(cells[k]) if cells[k] else None)
    return s


def _unwrapped(values: list[int | None], wrap: int | None) -> list[float | None]:
    out: list[float | None] = []
    acc = 0.0
    prev: int | None = None
    for v in values:
        if v is None:
            out.append(None)
            continue
        if prev is not None:
            d = _counter_delta(prev, v, wrap)
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


def window_energies(series: _Series, windows: Mapping[str, tuple[int, int]],
                    wraps: Mapping[str, int | None],
                    rule: str = "trapezoid") -> dict[str, dict[str, Any]]:
    """Per window: samples, mean power, trapezoid energy and (where possible) counter energy."""
    steps = {r: _steps(series.t, _unwrapped(v, wraps.get(r))) for r, v in series.counters.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, (start, end) in windows.items():
        lo = bisect.bisect_left(series.t, start)
        hi = bisect.bisect_right(series.t, end)
        integ = Integrator(rule)
        for k in range(lo, hi):
            integ.add(series.t[k], series.total[k])
        fig: dict[str, Any] = {
            "start_ns": start, "end_ns": end, "samples": integ.count,
            "avg_power_uw": integ.mean_uw, "energy_uj": integ.energy_uj, "span_s": integ.span_s,
        }
        if steps and integ.first_ns is not None and integ.last_ns is not None:
            parts = []
            for st, sv in steps.values():
                a, b = _at(st, sv, integ.first_ns), _at(st, sv, integ.last_ns)
                parts.append(None if a is None or b is None else b - a)
            if all(p is not None for p in parts):
                counter = float(sum(p for p in parts if p is not None))
                fig["counter_energy_uj"] = counter
                if integ.energy_uj:
                    fig["trapezoid_vs_counter"] = integ.energy_uj / counter - 1 if counter else None
        out[name] = fig
    return out
