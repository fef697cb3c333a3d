"""Per-model and per-layer energy report of a result directory (the ``jetpower[report]`` extra).

Library use::

    from jetpower.report import load_result, analyse, build_report, attribute_layers
    data = load_result("results/run1")          # arrays on one clock
    rep = analyse(data)                          # figures
    build_report("results/run1", "out/")         # report.md, CSVs, PNGs
"""

from jetpower.report import _deps as _deps  # first: a clear error if numpy/matplotlib lack
from jetpower.report._errors import ReportDependencyError, ResultError
from jetpower.report.analyse import LayerRow, ModelReport, Report, analyse, analyse_model
from jetpower.report.attribution import (
    MIN_LAYER_SAMPLES,
    Baseline,
    LatencyStats,
    LayerEnergy,
    WindowPower,
    attribute_layers,
    idle_baseline,
    latency_stats,
    trapezoid_energy,
    window_power,
)
from jetpower.report.build import BuildResult, build_report
from jetpower.report.load import LayerRuns, ModelData, Phase, ResultData, Window, load_result

__all__ = [
    "MIN_LAYER_SAMPLES",
    "Baseline",
    "BuildResult",
    "LatencyStats",
    "LayerEnergy",
    "LayerRow",
    "LayerRuns",
    "ModelData",
    "ModelReport",
    "Phase",
    "Report",
    "ReportDependencyError",
    "ResultData",
    "ResultError",
    "Window",
    "WindowPower",
    "analyse",
    "analyse_model",
    "attribute_layers",
    "build_report",
    "idle_baseline",
    "latency_stats",
    "load_result",
    "trapezoid_energy",
    "window_power",
]
