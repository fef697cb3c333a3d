"""A report's figures as plain JSON-able data, and the settings a comparison must match.

:func:`report_numbers` is what ``jetpower_report.json`` holds under ``numbers`` (SI units: W, J,
s; ``ci`` = half-width of the 95 % interval; ``null`` = no figure), the terminal summary, the HTML
report and ``compare`` read the same data. :func:`run_settings` pulls from a result's manifest and
worker metadata what makes two runs comparable: backend, dtype, device, sampler rate and source,
board, JetPack, power mode, clocks, jetpower version.
"""

from __future__ import annotations

import math
from typing import Any

from jetpower.report.analyse import ModelReport, Report
from jetpower.report.load import ResultData


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _model(r: ModelReport) -> dict[str, Any]:
    p, lat = r.power, r.latency
    return {
        "name": r.model.name,
        "status": r.model.status,
        "reason": r.model.reason,
        "runs": r.runs,
        "batch": r.model.batch,
        "timing_window": r.model.timing_source,
        "power_samples": p.n_samples if p else 0,
        "power_gross_w": _f(p.mean_gross_w) if p else None,
        "power_gross_ci_w": _f(p.ci_gross_w) if p else None,
        "power_net_w": _f(p.mean_net_w) if p else None,
        "power_net_ci_w": _f(p.ci_net_w) if p else None,
        "energy_per_inference_j": _f(r.energy_per_inference_j),
        "energy_per_inference_ci_j": _f(r.ci_energy_per_inference_j),
        "latency_mean_s": _f(lat.mean) if lat else None,
        "latency_ci_s": _f(lat.ci) if lat else None,
        "latency_median_s": _f(lat.median) if lat else None,
        "latency_p5_s": _f(lat.p5) if lat else None,
        "latency_p95_s": _f(lat.p95) if lat else None,
        "throughput_per_s": _f(r.throughput_per_s),
        "layer_method": r.layer_method,
        "layer_reading": r.layer_reading,
        "layer_reason": r.layer_reason,
        "layer_diagnostics": _clean(r.layer_diagnostics),
        "layers": [
            {
                "index": x.index,
                "name": x.energy.name,
                "type": x.type,
                "runs": x.latency.n,
                "latency_mean_s": _f(x.latency.mean),
                "latency_ci_s": _f(x.latency.ci),
                "latency_median_s": _f(x.latency.median),
                "equations": x.energy.n_samples,
                "method": x.energy.method,
                "power_samples": x.energy.n_samples,
                "power_net_w": _f(x.energy.mean_net_w),
                "power_net_ci_w": _f(x.energy.ci_net_w),
                "energy_j": _f(x.energy.energy_j),
                "energy_ci_j": _f(x.energy.ci_energy_j),
                "note": x.energy.note,
            }
            for x in r.layers
        ],
    }


def report_numbers(rep: Report) -> dict[str, Any]:
    """Every figure of the report (see the module doc)."""
    i = rep.idle
    return {
        "simulated": rep.data.simulated,
        "units": "W, J, s; *_ci_* = half-width of the 95 % interval",
        "idle": {"power_w": _f(i.power_w), "ci_w": _f(i.ci_w), "samples": i.n_samples,
                 "source": i.source},
        "models": [_model(r) for r in rep.models],
        "settings": run_settings(rep.data),
        "self_check": _clean(rep.self_check),
    }


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def run_settings(data: ResultData) -> dict[str, Any]:
    """What a comparison of two runs must match (``None`` where a result does not say)."""
    m = data.manifest or {}
    env = m.get("environment") or {}
    sensor = m.get("sensor") or {}
    plan = m.get("plan") or {}
    per_model: dict[str, dict[str, Any]] = {}
    for md in data.models:
        w = md.worker or {}
        cfg = (md.summary or {}).get("config") or {}
        per_model[md.name] = {
            "backend": w.get("backend") or _get(w, "config", "backend"),
            "dtype": cfg.get("dtype") or _get(w, "config", "dtype"),
            "device": w.get("device") or _get(w, "config", "device"),
            "input_shape": cfg.get("input_shape"),
        }
    cpu_govs = sorted({str(c.get("governor")) for c in
                       (_get(env, "clocks", "cpu") or {}).values() if isinstance(c, dict)})
    return {
        "simulated": data.simulated,
        "sampler_rate_hz": _get(plan, "sampler", "rate_hz") or _get(m, "sampler", "rate_hz"),
        "source": sensor.get("source"),
        "board": sensor.get("board"),
        "jetpack": sensor.get("jetpack"),
        "nvpmodel": _get(env, "nvpmodel", "mode_name"),
        "cpu_governors": cpu_govs or None,
        "devfreq_hz": {k: v.get("cur_hz") for k, v in
                       (_get(env, "clocks", "devfreq") or {}).items() if isinstance(v, dict)}
        or None,
        "hostname": env.get("hostname"),
        "jetpower": _get(env, "versions", "jetpower"),
        "torch": _get(env, "versions", "torch"),
        "models": per_model,
    }
