"""``report.html``: the whole report in one self-contained file (plots embedded as base64 PNG).

Built with the standard library: every text that comes from a result directory (model and layer
names, reasons, notes, paths) goes through :func:`html.escape`, and the page has no script, no
external stylesheet, font or image, so it opens the same from a mail attachment, offline. (jinja2
would give templates, but it is not a dependency of the report extra; a page of a few tables does
not need one.)
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jetpower.report.numbers import report_numbers

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.sim{background:#fde8e8;border:2px solid #c00;color:#900;padding:.8em 1em;font-weight:600}
.meta{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee}
code{background:#f6f6f6;padding:0 .2em}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _pm(x: float | None, ci: float | None, scale: float, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    text = f"{x * scale:.{digits}f}"
    if ci is not None and math.isfinite(ci):
        text += f" ± {ci * scale:.{digits}f}"
    return text


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></p>'


def _table(head: list[str], rows: Iterable[list[str]], left: int = 1) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{c}</{tag}>'
                       for i, c in enumerate(row))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', [_e(h) for h in head])}</tr>{body}</table>"


def render_html(rep: Any, out: Path, images: dict[str, str], layer_rows_shown: int = 15) -> str:
    """The page; ``images`` maps "campaign", "idle" and model names to PNG paths under ``out``."""
    n = report_numbers(rep)
    d = rep.data
    sim = bool(n["simulated"])
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>jetpower report: {_e(d.path.name)}{' (SIMULATED)' if sim else ''}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>jetpower report: <code>{_e(d.path.name)}</code></h1>"]
    banner = ('<p class="sim">⚠ SIMULATED DATA. This run used jetpower\'s simulated power source. '
              "Its numbers are not measurements of any board and must not be used or quoted as "
              "such.</p>")
    if sim:
        parts.append(banner)
    if n.get("self_check"):
        parts.append(f'<p class="sim"><b>{_e(n["self_check"].get("line", ""))}</b></p>')
    s = n["settings"]
    parts.append(f'<p class="meta">result directory <code>{_e(d.path)}</code>; clock '
                 f"{_e(d.clock)}; {d.t.size} power samples from {_e(d.trace_source)}; source "
                 f"{_e(s.get('source'))}, board {_e(s.get('board'))}, sampler "
                 f"{_e(s.get('sampler_rate_hz'))} Hz</p>")
    if "campaign" in images:
        parts.append(_img(out / images["campaign"], "power over the campaign"))
    i = n["idle"]
    parts.append("<h2>Idle baseline</h2>")
    parts.append(f"<p>idle power <b>{_pm(i['power_w'], i['ci_w'], 1, 4)} W</b> "
                 f"({_e(i['source'])}, {i['samples']} samples)</p>")
    if "idle" in images:
        parts.append(_img(out / images["idle"], "idle power distribution"))
    parts.append("<h2>Models</h2><p>Timing pass (no profiler); intervals are 95 %; net = gross "
                 "- idle.</p>")
    rows = [[_e(m["name"]), _e(m["status"]), str(m["runs"] or "-"),
             _pm(m["power_gross_w"], m["power_gross_ci_w"], 1, 3),
             _pm(m["power_net_w"], m["power_net_ci_w"], 1, 3),
             _pm(m["energy_per_inference_j"], m["energy_per_inference_ci_j"], 1e3, 4),
             _pm(m["latency_mean_s"], m["latency_ci_s"], 1e3, 4),
             _pm(m["throughput_per_s"], None, 1, 1)] for m in n["models"]]
    parts.append(_table(["model", "status", "runs", "gross W", "net W", "energy/inference mJ",
                         "latency ms", "throughput /s"], rows, left=2))
    for m in n["models"]:
        parts.append(f"<h3>{_e(m['name'])}</h3>")
        if m["status"] != "done":
            parts.append(f"<p>status <b>{_e(m['status'])}</b>: "
                         f"{_e(m['reason'] or 'no reason recorded')}</p>")
        if m["name"] in images:
            parts.append(_img(out / images[m["name"]], f"{m['name']} layers"))
        layers = sorted(m["layers"], key=lambda x: -(x["energy_j"] or 0.0))[:layer_rows_shown]
        if layers:
            parts.append(f"<p>Top {len(layers)} of {len(m['layers'])} layers by energy (all in "
                         "<code>layers.csv</code>):</p>")
            parts.append(_table(
                ["#", "layer", "type", "latency ms", "samples", "net W", "energy µJ"],
                [[str(x["index"]), f"<code>{_e(x['name'])}</code>", _e(x["type"] or ""),
                  _pm(x["latency_mean_s"], None, 1e3, 4), str(x["power_samples"]),
                  _pm(x["power_net_w"], x["power_net_ci_w"], 1, 3),
                  _pm(x["energy_j"], x["energy_ci_j"], 1e6, 2) if x["energy_j"] is not None
                  else "too few samples"] for x in layers], left=3))
        else:
            parts.append("<p>no per-layer profile on disk</p>")
    if sim:
        parts.append(banner)
    parts.append('<p class="meta">Written by jetpower report; the figures are also in '
                 "<code>jetpower_report.json</code>, <code>models.csv</code> and "
                 "<code>layers.csv</code>.</p></body></html>")
    return "\n".join(parts) + "\n"
