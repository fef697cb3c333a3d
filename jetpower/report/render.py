"""report.md and the CSV tables (``models.csv``, ``layers.csv``) a notebook reads.

Plain CSV: a header row, then the rows (``csv.reader``, ``pandas.read_csv(path)``); the last
column, ``simulated``, says whether the run used the simulated source. The tables' format and
version are in the report's JSON sidecar (``jetpower_report.json``, ``tables``), not in the file.
Empty cell: no figure (see ``note``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from jetpower.report.analyse import ModelReport, Report
from jetpower.report.stats import N_BATCHES

MODELS_CSV = "models.csv"
LAYERS_CSV = "layers.csv"
CSV_VERSION = 2  # 2: no comment line, a simulated column

MODEL_COLUMNS = [
    "model", "status", "reason", "runs", "batch", "timing_window", "timing_start_s",
    "timing_end_s", "power_samples", "power_gross_w", "power_gross_ci_w", "power_net_w",
    "power_net_ci_w", "energy_per_inference_mj", "energy_per_inference_ci_mj",
    "latency_mean_ms", "latency_ci_ms", "latency_median_ms", "latency_p5_ms", "latency_p95_ms",
    "throughput_per_s", "idle_w", "layers",
]  # fmt: skip
LAYER_COLUMNS = [
    "model", "index", "layer", "type", "runs", "latency_mean_ms", "latency_ci_ms",
    "latency_median_ms", "latency_p5_ms", "latency_p95_ms", "power_samples", "power_net_w",
    "power_net_ci_w", "energy_uj", "energy_ci_uj", "note", "method", "equations", "condition",
    "residual_rms_w",
]  # fmt: skip
#: the original downstream's layer-wise mapping schema (docs/FORMATS.md), one row per run x layer
LAYERWISE_CSV = "layerwise_power.csv"
LAYERWISE_COLUMNS = [
    "cycle", "layer_name", "layer_type", "layer_power_including_idle_power_micro_watt",
    "layer_power_excluding_idle_power_micro_watt", "layer_run_time",
]  # fmt: skip


def _num(x: float | None, scale: float = 1.0, digits: int = 6) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x * scale:.{digits}g}"


def model_row(r: ModelReport, idle_w: float) -> list[str]:
    """One ``models.csv`` row."""
    m, p, lat = r.model, r.power, r.latency
    return [
        m.name, m.status, m.reason or "", str(r.runs or ""), str(m.batch), m.timing_source,
        _num(m.timing.start if m.timing else None, digits=12),
        _num(m.timing.end if m.timing else None, digits=12),
        str(p.n_samples) if p else "", _num(p.mean_gross_w if p else None),
        _num(p.ci_gross_w if p else None, digits=3), _num(p.mean_net_w if p else None),
        _num(p.ci_net_w if p else None, digits=3), _num(r.energy_per_inference_j, 1e3),
        _num(r.ci_energy_per_inference_j, 1e3, 3), _num(lat.mean if lat else None, 1e3),
        _num(lat.ci if lat else None, 1e3, 3), _num(lat.median if lat else None, 1e3),
        _num(lat.p5 if lat else None, 1e3), _num(lat.p95 if lat else None, 1e3),
        _num(r.throughput_per_s), _num(idle_w), str(len(r.layers)),
    ]  # fmt: skip


def layer_rows(r: ModelReport) -> Iterable[list[str]]:
    """``layers.csv`` rows of one model, in execution order."""
    for row in r.layers:
        e, lat = row.energy, row.latency
        yield [
            r.model.name, str(row.index), e.name, row.type or "", str(lat.n),
            _num(lat.mean, 1e3), _num(lat.ci, 1e3, 3), _num(lat.median, 1e3), _num(lat.p5, 1e3),
            _num(lat.p95, 1e3), str(e.n_samples), _num(e.mean_net_w), _num(e.ci_net_w, digits=3),
            _num(e.energy_j, 1e6), _num(e.ci_energy_j, 1e6, 3), e.note, e.method,
            str(e.n_samples), _num(r.layer_diagnostics.get("condition"), digits=4),
            _num(r.layer_diagnostics.get("residual_rms_w"), digits=4),
        ]  # fmt: skip


def write_layerwise(rep: Report, out: Path) -> Path:
    """The downstream layer-wise file: per model, per profiled run (``cycle``, 0-based) and layer,
    the layer's estimated power with and without idle (uW) and that run's latency (ms).  A layer
    without an estimate gets empty power cells.  Written in blocks: 30000 runs x 200 layers is
    six million rows."""
    idle_uw = rep.idle.power_w * 1e6
    with (out / LAYERWISE_CSV).open("w", newline="", encoding="utf-8") as f:
        f.write(",".join([*LAYERWISE_COLUMNS, "model", "method", "simulated"]) + "\n")
        flag = "true" if rep.data.simulated else "false"
        for r in rep.models:
            lay = r.model.layers
            if lay is None or not r.layers:
                continue
            for row in r.layers:
                e = row.energy
                a, b = int(lay.offsets[row.index]), int(lay.offsets[row.index + 1])
                net = e.mean_net_w * 1e6 if e.energy_j is not None else math.nan
                inc = "" if not math.isfinite(net) else f"{net + idle_uw:.1f}"
                exc = "" if not math.isfinite(net) else f"{net:.1f}"
                name = _csv_cell(e.name)
                tail = (f",{_csv_cell(row.type or '')},{inc},{exc},")
                end = f",{_csv_cell(r.model.name)},{e.method},{flag}\n"
                ms = lay.ms[a:b]
                f.write("".join(f"{k},{name}{tail}{v:.6g}{end}" for k, v in enumerate(ms.tolist())))
    return out / LAYERWISE_CSV


def _csv_cell(s: str) -> str:
    return f'"{s.replace(chr(34), chr(34) * 2)}"' if any(c in s for c in ',"\n') else s


#: the tables' formats, for the JSON sidecar (the CSVs themselves carry no comment line)
TABLE_FORMATS = {MODELS_CSV: "jetpower.report-models", LAYERS_CSV: "jetpower.report-layers",
                 LAYERWISE_CSV: "jetpower.report-layerwise"}


def _write_csv(path: Path, header: list[str], rows: Iterable[list[str]], simulated: bool) -> Path:
    flag = "true" if simulated else "false"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*header, "simulated"])
        w.writerows([*row, flag] for row in rows)
    return path


def write_tables(rep: Report, out: Path) -> list[Path]:
    """Write models.csv and layers.csv (all models, a ``model`` column, a ``simulated`` column)."""
    sim = rep.data.simulated
    return [
        _write_csv(out / MODELS_CSV, MODEL_COLUMNS,
                   (model_row(r, rep.idle.power_w) for r in rep.models), sim),
        _write_csv(out / LAYERS_CSV, LAYER_COLUMNS,
                   (row for r in rep.models for row in layer_rows(r)), sim),
        write_layerwise(rep, out),
    ]  # fmt: skip


def _pm(x: float, hw: float, scale: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "n/a"
    s = f"{x * scale:.{digits}f}"
    return s + (f" ± {hw * scale:.{digits}f}" if math.isfinite(hw) else "")


def _md_name(s: str) -> str:
    return s.replace("|", "\\|").replace("`", "'")


BANNER = (
    "> **⚠ SIMULATED DATA.** This run used jetpower's simulated power source "
    "(manifest `\"simulated\": true`). Its numbers are **not measurements** of any board "
    "and must not be used or quoted as such.\n"
)


def render_markdown(rep: Report, images: dict[str, str], layer_rows_shown: int = 15) -> str:
    """The text of report.md; ``images`` maps a key ("campaign", "idle", model name) to a path."""
    d = rep.data
    lines: list[str] = []
    add = lines.append
    add(f"# jetpower report: `{_md_name(d.path.name)}`\n")
    if d.simulated:
        add(BANNER)
    if rep.self_check is not None:
        add(f"**{rep.self_check.get('line', '')}**\n")
    add("## Sources\n")
    add(f"- result directory: `{d.path}`")
    layout = "jetpower (manifest, samples, worker metadata)" if d.manifest else (
        "original scripts only (no jetpower manifest)")
    add(f"- layout: {layout}")
    add(f"- clock: **{d.clock}**" + (
        " (CLOCK_MONOTONIC; layer wall-clock stamps converted through the manifest's anchor, "
        f"anchor error ±{d.anchor.error_ns} ns; stamps have 1 µs resolution)" if d.anchor else
        " (wall-clock text of the original files, local time, 1 µs resolution)"))
    add(f"- power samples: {d.t.size} from {d.trace_source}")
    if d.manifest:
        st = d.manifest.get("status")
        sampler = d.manifest.get("sampler") or {}
        # counters over the whole run (all sampler processes, if it was restarted)
        totals = {**sampler, **(d.manifest.get("sampler_totals") or {})}
        errors = totals.get("read_errors", "?")
        if isinstance(errors, dict):
            errors = sum(errors.values())
        add(f"- run status: {st}; sampler rate {sampler.get('rate_hz', '?')} Hz, "
            f"{totals.get('samples', '?')} samples, overruns {totals.get('overruns', '?')}, "
            f"missed deadlines {totals.get('missed_deadlines', '?')}, read errors {errors}, "
            f"restarts {sampler.get('restarts', 0)}")
    for n in d.notes:
        add(f"- note: {n}")
    add("")
    if "campaign" in images:
        add(f"![power over the campaign]({images['campaign']})\n")

    add("## Idle baseline\n")
    i = rep.idle
    add(f"- idle power: **{_pm(i.power_w, i.ci_w, 1.0, 4)} W** ({i.source}, {i.n_samples} samples)")
    if d.idle_file_uw is not None:
        add(f"- `idling_power.json` says {d.idle_file_uw * 1e-6:.4f} W")
    add("")
    if "idle" in images:
        add(f"![idle power distribution]({images['idle']})\n")
    else:
        add("No idle-phase samples on disk: no distribution to show.\n")

    add("## Models\n")
    add("Timing pass (no profiler). Mean power is the trapezoid integral over the timing window "
        "divided by its length; net = gross - idle. Energy per inference = net integral / runs.\n")
    add("| model | status | runs | window | samples | gross W | net W | energy/inference mJ "
        "| latency ms | p5-p95 ms | throughput /s |")
    add("|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rep.models:
        p, lat = r.power, r.latency
        add("| " + " | ".join([
            _md_name(r.model.name), r.model.status, str(r.runs or "-"), r.model.timing_source,
            str(p.n_samples) if p else "-",
            _pm(p.mean_gross_w, p.ci_gross_w, 1, 3) if p else "n/a",
            _pm(p.mean_net_w, p.ci_net_w, 1, 3) if p else "n/a",
            _pm(r.energy_per_inference_j, r.ci_energy_per_inference_j, 1e3, 4),
            _pm(lat.mean, lat.ci, 1e3, 4) if lat else "n/a",
            f"{lat.p5 * 1e3:.3f}-{lat.p95 * 1e3:.3f}" if lat else "n/a",
            f"{r.throughput_per_s:.1f}" if math.isfinite(r.throughput_per_s) else "n/a",
        ]) + " |")  # fmt: skip
    add("\nWindow: `worker` = the worker's timing-pass phase markers; `estimated` = no markers, "
        "the `total_time` just before profiling starts; `benchmark` = the whole benchmark window "
        "(compile, warm-up, timing and profiling): those figures are NOT timing-pass figures.\n")

    for r in rep.models:
        add(f"### {_md_name(r.model.name)}\n")
        if r.model.status != "done":
            add(f"- status **{r.model.status}**: {r.model.reason or 'no reason recorded'}")
        for n in r.model.notes:
            add(f"- note: {n}")
        if not r.layers:
            add("- no per-layer profile on disk\n")
            continue
        refused = [x for x in r.layers if x.energy.energy_j is None]
        add(f"- per-layer estimator: **{r.layer_method}** (reading: {r.layer_reading})")
        if r.layer_reason:
            add(f"- per-layer energy refused: {r.layer_reason}")
        dg = r.layer_diagnostics
        if dg.get("equations"):
            add(f"- fit: {dg['equations']} equations of {dg.get('conversions')} conversions, "
                f"offset {dg.get('offset_us', math.nan):.1f} us "
                f"(self-calibrated: {dg.get('offset_self_calibrated')}), condition "
                f"{dg.get('condition', math.nan):.3g}, residual {dg.get('residual_rms_w', 0):.3g} W"
                f", {dg.get('outlier_runs', 0)} outlier runs left out")
        add(f"- {len(r.layers)} layers, {r.layers[0].latency.n} profiled runs; "
            f"{len(refused)} layers get no energy estimate (see `note` in `{LAYERS_CSV}`)")
        estimated = [x.energy.energy_j for x in r.layers if x.energy.energy_j is not None]
        if estimated:
            add(f"- sum of the {len(estimated)} estimated layer energies: "
                f"{sum(estimated) * 1e3:.4f} mJ per profiled inference"
                + (" (the other layers have no estimate, so this is not the inference's energy)"
                   if refused else "")
                + (f"; the pass's own energy per inference: "
                   f"{dg['pass_energy_per_inference_uj'] * 1e-3:.4f} mJ"
                   if isinstance(dg.get("pass_energy_per_inference_uj"), float) else ""))
        else:
            add("- no layer has enough samples for an energy estimate: profile more runs, or "
                "sample faster where the sensor's values change faster")
        add("")
        if r.model.name in images:
            add(f"![{_md_name(r.model.name)} layers]({images[r.model.name]})\n")
        top = sorted(r.layers, key=lambda x: -(x.energy.energy_j or 0.0))[:layer_rows_shown]
        add(f"Top {len(top)} layers by energy (all layers in `layers.csv`):\n")
        add("| # | layer | type | latency ms | equations | net W | energy µJ |")
        add("|---:|---|---|---:|---:|---:|---:|")
        for x in top:
            e = x.energy
            en = _pm(e.energy_j, e.ci_energy_j or math.nan, 1e6, 2) if e.energy_j is not None \
                else ("no estimate: too few samples" if "need >=" in e.note else "no estimate")
            add(f"| {x.index} | `{_md_name(e.name)}` | {x.type or ''} | "
                f"{x.latency.mean * 1e3:.4f} | {e.n_samples} | "
                f"{_pm(e.mean_net_w, e.ci_net_w, 1, 3)} | {en} |")
        add("")

    add("## Method\n")
    add(f"- Intervals: 95 %, by non-overlapping batch means ({N_BATCHES} contiguous batches of "
        "the time-ordered series; t quantile with batches-1 degrees of freedom), because "
        "successive samples are autocorrelated (the sensor re-reads one conversion for ~7 ms).")
    add("- Net intervals add the idle baseline's interval in quadrature.")
    add("- Timing-pass integral: trapezoid over samples with start <= t <= end, power linearly "
        "interpolated at both edges.")
    add("- Per-layer energy: the estimator follows each source's reading model. Window-mean "
        "readings (INA3221): the conversion schedule is fitted from the value changes, each "
        "distinct conversion is one equation (its value = the overlap-weighted mean power of "
        "the layers and the gap in its window), solved by least squares across all profiled "
        "runs, with the latch offset self-calibrated by least residual and intervals by a block "
        "bootstrap over runs. Point-like readings: the same with one equation per read. "
        "Counters or windows spanning many inferences: no per-layer figure. Energy per "
        "execution = net power x mean latency of non-outlier executions. The paragraph below "
        "describes the in-window estimator, used only where no manifest says what a reading is.")
    add("- Layer windows: [end - latency, end) from `trt_layer_latency.json` (end = the "
        "recorded stamp). Layer net power = mean of the (net) samples whose stamp falls inside "
        "any of the layer's windows over all profiled runs; energy per execution = that x mean "
        "latency; interval: relative intervals of both factors in quadrature (power by batch "
        "means over windows grouped in run order). Fewer than "
        f"{rep.min_layer_samples} samples: no estimate.")
    add("- Caveat: a sample reports the sensor's last conversion (~7 ms of averaging on the "
        "INA3221), not the instant power; a layer's figure is therefore pulled toward the power "
        "of its neighbours. Treat per-layer energies as estimates of the run-level power "
        "distribution, not as isolated measurements.")
    add(f"- Tables: `{MODELS_CSV}`, `{LAYERS_CSV}` (one row per layer, `model` column, "
        "`simulated` column); plain CSV: `pandas.read_csv(path)`.")
    if d.simulated:
        add("\n" + BANNER)
    return "\n".join(lines) + "\n"
