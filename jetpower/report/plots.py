"""PNG figures, drawn headless with matplotlib's Agg canvas (no pyplot, no display).

A figure of a run on the simulated source carries a large "SIMULATED" mark across it and in its
title, every one of them: a plot copied out of the report still says its numbers are not
measurements.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jetpower.report.analyse import ModelReport, Report
from jetpower.report.load import F64

#: bins of the min/max envelope of long traces
ENVELOPE_BINS = 3000
#: layers shown per model plot
TOP_N = 30
_PHASE_COLOURS = {"idle": "#999999", "cooldown": "#9ecae1"}


SIMULATED_MARK = "SIMULATED"


def _save(fig: Figure, path: Path, simulated: bool) -> Path:
    if simulated:
        fig.text(0.5, 0.5, SIMULATED_MARK, fontsize=48, color="#cc0000", alpha=0.18,
                 ha="center", va="center", rotation=20, weight="bold", zorder=10)
        fig.text(0.995, 0.005, "SIMULATED DATA: not a measurement", fontsize=8, color="#cc0000",
                 ha="right", va="bottom")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def envelope(t: F64, p: F64, bins: int = ENVELOPE_BINS) -> tuple[F64, F64, F64, F64]:
    """(bin centres, min, mean, max) of a trace over equal time bins; empty bins are NaN."""
    edges = np.linspace(t[0], t[-1], bins + 1)
    idx = np.searchsorted(t, edges[:-1], "left")
    counts = np.diff(np.append(idx, t.size))
    ok = counts > 0
    starts = idx[ok]
    lo = np.full(bins, np.nan)
    hi = np.full(bins, np.nan)
    mean = np.full(bins, np.nan)
    lo[ok] = np.minimum.reduceat(p, starts)
    hi[ok] = np.maximum.reduceat(p, starts)
    mean[ok] = np.add.reduceat(p, starts) / counts[ok]
    return (edges[:-1] + edges[1:]) / 2, lo, mean, hi


def short_label(name: str, width: int = 32) -> str:
    """A layer name cut to ``width`` characters, keeping its head and tail."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep // 2] + "…" + name[-(keep - keep // 2) :]


def campaign_trace(rep: Report, path: Path) -> Path:
    """The power trace of the whole campaign, phases shaded."""
    d = rep.data
    fig = Figure(figsize=(12, 4.2))
    ax = fig.add_subplot()
    scale, unit = (60.0, "min") if d.t.size and d.t[-1] - d.t[0] > 900 else (1.0, "s")
    if d.t.size >= 2:
        x, lo, mean, hi = envelope(d.t, d.p_uw * 1e-6, min(ENVELOPE_BINS, d.t.size))
        ax.fill_between(x / scale, lo, hi, color="#444444", alpha=0.35, lw=0, label="min/max")
        ax.plot(x / scale, mean, color="black", lw=0.6, label="mean")
    cmap = [f"C{i}" for i in range(10)]
    seen: set[str] = set()
    models = [m.name for m in d.models]
    for ph in d.phases:
        if ph.name == "benchmark":
            colour = cmap[models.index(ph.model) % 10] if ph.model in models else "C0"
            label = str(ph.model)
        else:
            colour = _PHASE_COLOURS.get(ph.name, "#dddddd")
            label = ph.name
        ax.axvspan(ph.window.start / scale, ph.window.end / scale, color=colour, alpha=0.18,
                   lw=0, label=None if label in seen else label)  # fmt: skip
        seen.add(label)
    if rep.idle.power_w:
        ax.axhline(rep.idle.power_w, color="C3", lw=0.8, ls="--", label="idle baseline")
    ax.set_xlabel(f"time since start of run ({unit}, {d.clock} clock)")
    ax.set_ylabel("total power (W)")
    title = "Power over the campaign"
    if d.simulated:
        title += " (SIMULATED DATA)"
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, frameon=False,
                  ncol=min(8, len(seen) + 3))  # fmt: skip
    fig.tight_layout()
    return _save(fig, path, d.simulated)


def idle_histogram(rep: Report, path: Path) -> Path | None:
    """Distribution of the idle-phase power samples (None when none are on disk)."""
    s = rep.idle_samples_uw * 1e-6
    if s.size < 2:
        return None
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    ax.hist(s, bins=min(60, max(10, int(math.sqrt(s.size)))), color="#777777")
    ax.axvline(rep.idle.power_w, color="C3", label=f"mean {rep.idle.power_w:.3f} W")
    ax.set_xlabel("idle power (W)")
    ax.set_ylabel("samples")
    ax.set_title(f"Idle power, {s.size} samples" + (" (SIMULATED DATA)" if rep.data.simulated
                                                     else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, rep.data.simulated)


def layer_bars(mr: ModelReport, path: Path, top_n: int = TOP_N, *,
               simulated: bool = False) -> Path | None:
    """Per-layer energy (with interval) and latency bars for the ``top_n`` slowest layers."""
    if not mr.layers:
        return None
    rows = sorted(mr.layers, key=lambda r: -np.nan_to_num(r.latency.mean))[:top_n]
    n = len(rows)
    y = np.arange(n)
    fig = Figure(figsize=(12, 1.6 + 0.28 * n))
    ax_e, ax_l = fig.subplots(1, 2, sharey=True)
    e = np.array([r.energy.energy_j * 1e6 if r.energy.energy_j is not None else 0.0 for r in rows])
    ci = np.array([r.energy.ci_energy_j * 1e6 if r.energy.ci_energy_j is not None else 0.0
                   for r in rows])  # fmt: skip
    ax_e.barh(y, e, xerr=ci, color="C1", ecolor="#333333", capsize=2)
    for i, r in enumerate(rows):
        if r.energy.energy_j is None:
            ax_e.text(0, i, f"  n={r.energy.n_samples}: too few samples", va="center", fontsize=7,
                      color="#aa0000")  # fmt: skip
    ax_e.set_xlabel("energy per execution (µJ, net of idle; 95 % interval)")
    lat = np.array([r.latency.mean * 1e3 for r in rows])
    lo = lat - np.array([r.latency.p5 * 1e3 for r in rows])
    hi = np.array([r.latency.p95 * 1e3 for r in rows]) - lat
    ax_l.barh(y, lat, xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], color="C0", ecolor="#333333",
              capsize=2)  # fmt: skip
    ax_l.set_xlabel("latency (ms; mean, whiskers p5-p95)")
    ax_e.set_yticks(y, [f"{r.index}: {short_label(r.energy.name)}" for r in rows], fontsize=7)
    ax_e.invert_yaxis()
    shown = f"top {n} of {len(mr.layers)} layers by latency" if n < len(mr.layers) else "all layers"
    fig.suptitle(f"{mr.model.name}: per-layer energy and latency ({shown})"
                 + (" (SIMULATED DATA)" if simulated else ""))
    fig.tight_layout()
    return _save(fig, path, simulated)
