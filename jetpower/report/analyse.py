"""From loaded files to figures: idle baseline, per-model timing-pass figures, per-layer rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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


@dataclass
class Report:
    """Everything the report shows."""

    data: ResultData
    idle: Baseline
    idle_samples_uw: F64
    models: list[ModelReport]
    min_layer_samples: int


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
        windows = {name: lay.windows(i) for i, name in enumerate(lay.names)}
        energies = attribute_layers(
            data.t, data.p_uw, windows, idle.power_w * 1e6, idle_ci_uw=idle.ci_w * 1e6,
            min_samples=min_samples,
        )
        for i, e in enumerate(energies):
            a, b = int(lay.offsets[i]), int(lay.offsets[i + 1])
            r.layers.append(LayerRow(i, lay.types[i], latency_stats(lay.ms[a:b] * 1e-3), e))
    return r


def analyse(data: ResultData, min_layer_samples: int = MIN_LAYER_SAMPLES) -> Report:
    """All figures of a loaded result directory."""
    win = (data.idle_window.start, data.idle_window.end) if data.idle_window else None
    idle, samples = idle_baseline(
        data.t, data.p_uw, win, manifest_uw=data.idle_manifest_uw, file_uw=data.idle_file_uw
    )
    models = [analyse_model(data, m, idle, min_layer_samples) for m in data.models]
    return Report(data, idle, np.asarray(samples), models, min_layer_samples)
