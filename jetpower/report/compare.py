"""Compare result directories: per model and per layer, the difference, its interval, significance.

The first run is the reference; every other run is compared with it (as pyperf's ``compare_to``).
Each run is loaded and analysed by the report's own code (:func:`analyse`), so a figure here is
the figure its report shows. For a metric with 95 % half-widths ``ci_a`` and ``ci_b`` (batch
means, see the report's Method section), the difference ``b - a`` gets the half-width
``sqrt(ci_a^2 + ci_b^2)`` (the runs are independent) and is called significant when the interval
excludes 0. Throughput's interval is derived from latency's (``thr = batch / latency``).

Settings that make runs incomparable (backend, dtype, device, input shape, sampler rate and source,
board, JetPack, power mode, CPU governors, devfreq clocks, simulated or not) are compared too: each
difference is a warning naming the setting and both values; the comparison is still made.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower.report.analyse import analyse
from jetpower.report.load import load_result
from jetpower.report.numbers import report_numbers

#: (metric key, label, unit, scale to the unit, the numbers' keys: value, interval)
MODEL_METRICS = (
    ("energy_per_inference", "energy/inference", "mJ", 1e3,
     "energy_per_inference_j", "energy_per_inference_ci_j"),
    ("latency", "latency", "ms", 1e3, "latency_mean_s", "latency_ci_s"),
    ("throughput", "throughput", "/s", 1.0, "throughput_per_s", None),
    ("net_power", "net power", "W", 1.0, "power_net_w", "power_net_ci_w"),
)
LAYER_METRICS = (
    ("latency", "latency", "ms", 1e3, "latency_mean_s", "latency_ci_s"),
    ("energy", "energy", "µJ", 1e6, "energy_j", "energy_ci_j"),
    ("net_power", "net power", "W", 1.0, "power_net_w", "power_net_ci_w"),
)
_RUN_SETTINGS = ("simulated", "sampler_rate_hz", "source", "board", "jetpack", "nvpmodel",
                 "cpu_governors", "devfreq_hz")
_MODEL_SETTINGS = ("backend", "dtype", "device", "input_shape")
CSV_COLUMNS = ["reference", "run", "model", "layer", "metric", "unit", "a", "a_ci", "b", "b_ci",
               "diff", "diff_ci", "ratio", "significant"]


@dataclass(frozen=True)
class Row:
    """One metric of one model (``layer`` None) or layer, reference ``a`` against run ``b``."""

    reference: str
    run: str
    model: str
    layer: str | None
    metric: str
    unit: str
    a: float | None
    a_ci: float | None
    b: float | None
    b_ci: float | None

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def diff_ci(self) -> float | None:
        if self.a_ci is None or self.b_ci is None:
            return None
        return math.hypot(self.a_ci, self.b_ci)

    @property
    def ratio(self) -> float | None:
        return None if self.a in (None, 0) or self.b is None else self.b / self.a

    @property
    def significant(self) -> bool | None:
        d, ci = self.diff, self.diff_ci
        return None if d is None or ci is None else abs(d) > ci


@dataclass
class Comparison:
    """All rows and warnings of a comparison."""

    runs: list[str]
    rows: list[Row]
    warnings: list[str]
    simulated: list[str]


def _throughput_ci(m: dict[str, Any]) -> float | None:
    thr, lat, ci = m.get("throughput_per_s"), m.get("latency_mean_s"), m.get("latency_ci_s")
    if thr is None or not lat or ci is None:
        return None
    return float(thr * ci / lat)


def _value(m: dict[str, Any], key: str, ci_key: str | None, scale: float
           ) -> tuple[float | None, float | None]:
    v = m.get(key)
    ci = m.get(ci_key) if ci_key else (_throughput_ci(m) if key == "throughput_per_s" else None)
    return (None if v is None else v * scale), (None if ci is None else ci * scale)


def load_numbers(result_dir: Path) -> dict[str, Any]:
    """The report figures of one result directory (analysed now, as ``report`` would)."""
    return report_numbers(analyse(load_result(result_dir)))


def _setting_warnings(names: list[str], numbers: list[dict[str, Any]]) -> list[str]:
    out = []
    ref, ref_s = names[0], numbers[0]["settings"]
    for name, num in zip(names[1:], numbers[1:]):
        s = num["settings"]
        for key in _RUN_SETTINGS:
            if s.get(key) != ref_s.get(key):
                out.append(f"{key} differs: {ref}: {ref_s.get(key)!r}, {name}: {s.get(key)!r}")
        for model, ms in s.get("models", {}).items():
            rs = ref_s.get("models", {}).get(model)
            if rs is None:
                continue
            for key in _MODEL_SETTINGS:
                if ms.get(key) != rs.get(key):
                    out.append(f"{model}: {key} differs: {ref}: {rs.get(key)!r}, "
                               f"{name}: {ms.get(key)!r}")
    return out


def compare(result_dirs: list[Path], numbers: list[dict[str, Any]] | None = None) -> Comparison:
    """Compare every run with the first (see the module doc)."""
    numbers = numbers or [load_numbers(p) for p in result_dirs]
    names = _names(result_dirs)
    rows: list[Row] = []
    warnings = _setting_warnings(names, numbers)
    ref = {m["name"]: m for m in numbers[0]["models"]}
    for name, num in zip(names[1:], numbers[1:]):
        other = {m["name"]: m for m in num["models"]}
        for missing in sorted(set(ref) ^ set(other)):
            where = names[0] if missing not in ref else name
            warnings.append(f"model {missing!r} is not in {where}: not compared")
        for model in [m for m in ref if m in other]:
            a, b = ref[model], other[model]
            for key, _label, unit, scale, vk, ck in MODEL_METRICS:
                rows.append(Row(names[0], name, model, None, key, unit, *_value(a, vk, ck, scale),
                                *_value(b, vk, ck, scale)))
            la = {x["name"]: x for x in a["layers"]}
            lb = {x["name"]: x for x in b["layers"]}
            if la and lb and set(la) != set(lb):
                warnings.append(f"{model}: the layers differ ({len(set(la) - set(lb))} only in "
                                f"{names[0]}, {len(set(lb) - set(la))} only in {name}); "
                                "common layers compared")
            for lname in [x for x in la if x in lb]:
                for key, _label, unit, scale, vk, ck in LAYER_METRICS:
                    rows.append(Row(names[0], name, model, lname, key, unit,
                                    *_value(la[lname], vk, ck, scale),
                                    *_value(lb[lname], vk, ck, scale)))
    sim = [n for n, num in zip(names, numbers) if num["simulated"]]
    return Comparison(names, rows, warnings, sim)


def _names(dirs: list[Path]) -> list[str]:
    names = [p.name or str(p) for p in dirs]
    if len(set(names)) < len(names):
        names = [str(p) for p in dirs]
    return names


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _cells(r: Row) -> list[str]:
    ci = f" ± {_fmt(r.diff_ci, 2)}" if r.diff_ci is not None else ""
    sig = {True: "significant", False: "not significant", None: "no interval"}[r.significant]
    return [r.model, r.layer or "(model)", f"{r.metric} ({r.unit})",
            _fmt(r.a) + (f" ± {_fmt(r.a_ci, 2)}" if r.a_ci is not None else ""),
            _fmt(r.b) + (f" ± {_fmt(r.b_ci, 2)}" if r.b_ci is not None else ""),
            _fmt(r.diff) + ci,
            "-" if r.ratio is None else f"{r.ratio:.3f}x", sig]


HEAD = ["model", "layer", "metric", "A", "B", "B - A (95 %)", "B / A", ""]


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*CSV_COLUMNS, "simulated"])
    for r in c.rows:
        sim = "true" if r.reference in c.simulated or r.run in c.simulated else "false"
        w.writerow([r.reference, r.run, r.model, r.layer or "", r.metric, r.unit,
                    *("" if v is None else repr(float(v)) for v in (r.a, r.a_ci, r.b, r.b_ci,
                                                                   r.diff, r.diff_ci, r.ratio)),
                    "" if r.significant is None else str(r.significant).lower(), sim])
    return buf.getvalue()


def to_markdown(c: Comparison, layers: bool = True) -> str:
    lines = [f"# jetpower compare: {', '.join(f'`{n}`' for n in c.runs)}", ""]
    if c.simulated:
        lines += [f"> **SIMULATED DATA** in {', '.join(c.simulated)}: not measurements.", ""]
    lines += [f"- warning: {w}" for w in c.warnings]
    for run in c.runs[1:]:
        lines += ["", f"## {run} against {c.runs[0]}", "",
                  "| " + " | ".join([*HEAD[:-1], "significant"]) + " |",
                  "|" + "---|" * 2 + "---|" + "---:|" * 4 + "---|"]
        for r in c.rows:
            if r.run == run and (layers or r.layer is None):
                cells = [x.replace("|", "\\|") for x in _cells(r)]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_comparison(c: Comparison, console: Any = None, layers: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for w in c.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if c.simulated:
        console.print(f"[bold red]SIMULATED DATA[/bold red] in {', '.join(c.simulated)}: "
                      "not measurements", highlight=False)
    for run in c.runs[1:]:
        t = Table(title=f"{run} against {c.runs[0]} (A = {c.runs[0]}, B = {run})")
        for i, h in enumerate(HEAD):
            t.add_column(h, justify="left" if i < 3 or i == 7 else "right")
        for r in c.rows:
            if r.run == run and (layers or r.layer is None):
                cells = _cells(r)
                if r.significant:
                    cells[-1] = f"[bold]{cells[-1]}[/bold]"
                t.add_row(*cells)
        console.print(t)
