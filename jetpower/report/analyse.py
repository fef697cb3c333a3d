"""From loaded files to figures: idle baseline, per-model timing-pass figures, per-layer rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from jetpower.report.attribution import (
    MIN_LAYER_SAMPLES,
    Baseline,
    LatencyStats,
    LayerEnergy,
    WindowPower,
    attribute_layers,
    idle_baseline,
    latency_stats,
    window_power,
)
from jetpower.report.layer_energy import LayerEnergyResult, LayerResult, estimate_model, self_check
from jetpower.report.load import F64, ModelData, ResultData


@dataclass(frozen=True)
class LayerRow:
    """One layer: its type, latency statistics (s) and attributed energy."""

    index: int
    type: str | None
    latency: LatencyStats
    energy: LayerEnergy


@dataclass
class ModelReport:
    """Figures of one model."""

    model: ModelData
    power: WindowPower | None = None
    runs: int = 0
    energy_per_inference_j: float = math.nan
    ci_energy_per_inference_j: float = math.nan
    latency: LatencyStats | None = None
    throughput_per_s: float = math.nan
    layers: list[LayerRow] = field(default_factory=list)
    #: the per-layer estimator chosen from the reading model, its reason and diagnostics
    layer_method: str = "in-window"
    layer_reading: str = ""
    layer_reason: str = ""
    layer_diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """Everything the report shows."""

    data: ResultData
    idle: Baseline
    idle_samples_uw: F64
    models: list[ModelReport]
    min_layer_samples: int
    #: simulated runs: per-layer energies against the simulator's truth (layer_energy.self_check)
    self_check: dict[str, Any] | None = None


def analyse_model(
    data: ResultData, m: ModelData, idle: Baseline, min_samples: int = MIN_LAYER_SAMPLES
) -> ModelReport:
    """Timing-pass power and energy, latency, throughput and per-layer attribution of one model."""
    r = ModelReport(m)
    if m.latencies_s is not None and m.latencies_s.size:
        r.latency = latency_stats(m.latencies_s)
        r.runs = int(m.latencies_s.size)
        r.throughput_per_s = m.batch / r.latency.mean
    elif m.worker and isinstance((m.worker.get("timing") or {}).get("runs"), int):
        r.runs = int(m.worker["timing"]["runs"])
    if m.timing is not None and data.t.size >= 2:
        wp = window_power(data.t, data.p_uw, m.timing.start, m.timing.end, idle,
                          rule=data.integration_rule)
        r.power = wp
        if r.runs and not math.isnan(wp.energy_gross_j):
            dur = m.timing.duration
            r.energy_per_inference_j = (wp.energy_gross_j - idle.power_w * dur) / r.runs
            r.ci_energy_per_inference_j = wp.ci_net_w * dur / r.runs
    if m.layers is not None:
        lay = m.layers
        new = estimate_model(data, m, idle.power_w, idle.ci_w)
        if new is None:
            windows = {name: lay.windows(i) for i, name in enumerate(lay.names)}
            energies = attribute_layers(
                data.t, data.p_uw, windows, idle.power_w * 1e6, idle_ci_uw=idle.ci_w * 1e6,
                min_samples=min_samples,
            )
            r.layer_reading = "unknown (no manifest): the in-window estimator"
        else:
            energies = _as_energies(new, lay.names, lay.offsets, lay.ms)
            r.layer_method, r.layer_reading = new.method, new.reading
            r.layer_reason, r.layer_diagnostics = new.reason, new.diagnostics
        for i, e in enumerate(energies):
            a, b = int(lay.offsets[i]), int(lay.offsets[i + 1])
            r.layers.append(LayerRow(i, lay.types[i], latency_stats(lay.ms[a:b] * 1e-3), e))
    return r


def _as_energies(res: LayerEnergyResult, names: list[str], offsets: npt.NDArray[np.int64],
                 ms: F64) -> list[LayerEnergy]:
    """The chosen estimator's layers as report rows (matched by name; missing ones refused)."""
    by = {x.name: x for x in res.layers}
    out = []
    for i, n in enumerate(names):
        a, b = int(offsets[i]), int(offsets[i + 1])
        x = by.get(n)
        lat = float(ms[a:b].mean()) * 1e-3 if b > a else math.nan
        if x is None:
            out.append(LayerEnergy(n, b - a, 0, lat, math.nan, math.nan, math.nan, None, None,
                                   _note(None, res.reason or "not estimated"), res.method))
            continue
        nan = math.nan
        out.append(LayerEnergy(
            n, b - a, x.n_equations, lat, nan,
            nan if x.power_w is None else x.power_w,
            nan if x.power_ci_w is None else x.power_ci_w,
            x.energy_j, x.ci_j, _note(x.energy_j, x.note or res.reason), res.method))  # fmt: skip
    return out


def analyse(data: ResultData, min_layer_samples: int = MIN_LAYER_SAMPLES) -> Report:
    """All figures of a loaded result directory."""
    win = (data.idle_window.start, data.idle_window.end) if data.idle_window else None
    idle, samples = idle_baseline(
        data.t, data.p_uw, win, manifest_uw=data.idle_manifest_uw, file_uw=data.idle_file_uw
    )
    models = [analyse_model(data, m, idle, min_layer_samples) for m in data.models]
    rep = Report(data, idle, np.asarray(samples), models, min_layer_samples)
    per = {mr.model.name: LayerEnergyResult(mr.layer_method, mr.layer_reading, True,
                                            mr.layer_reason, [
        _result_row(x.energy) for x in mr.layers]) for mr in models if mr.layers}
    rep.self_check = self_check(data, per, idle.power_w)
    return rep


def _note(energy: float | None, note: str) -> str:
    if energy is not None:
        return note
    return note if note.startswith("no estimate") else f"no estimate: {note}"


def _result_row(e: LayerEnergy) -> LayerResult:
    p = e.mean_net_w if math.isfinite(e.mean_net_w) else None
    return LayerResult(e.name, p, None, e.energy_j, e.ci_energy_j, e.n_samples, e.note)
