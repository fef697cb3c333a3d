"""Per-layer energy of one model: the estimator its source's reading model calls for.

The choice is made from what the result directory says the readings are, never from a flag:

- **window mean** (an INA3221, real or simulated): the conversion schedule is fitted from the
  total rail's current reads (:mod:`jetpower.report.schedule`) and every distinct conversion is
  one equation of :func:`jetpower.report.deconvolve.estimate_layers`.  Reads are anchored at
  their own start stamps (samples CSV v2); directories written before per-read stamps (whose
  INA3221 rails may even claim ``instant``) are anchored at the pass mid-point, with the chip's
  schedule taken from the manifest's ``update_interval`` and ``samples`` and the latch offset
  found by the self-calibration alone.
- **instant** (generic hwmon power files): the same least squares with one-hot rows, one per
  read (outlier runs left out, so one stall does not move a layer).
- **counter**, or a window that spans many inferences (NVML ~100 ms, RAPL): no per-layer number;
  the reason says so, and the isolation pass's figures stand in where the directory has them.
- No manifest at all (the original scripts' layout): nothing says what a reading is; the old
  in-window estimator (:mod:`jetpower.report.attribution`) is used and labelled as such.

Energy per execution = estimated net power x the mean latency of non-outlier executions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jetpower.acquire import samples_csv
from jetpower.report._errors import ResultError
from jetpower.report.deconvolve import (
    LayerFit,
    ProfiledRuns,
    RailReads,
    estimate_layers,
    sum_rails,
)
from jetpower.report.load import SAMPLES, ModelData, ResultData
from jetpower.report.schedule import INA3221_CONV_US, ReadingModel, fit_schedule

#: sources whose rails are INA3221 conversions, whatever an older manifest claims
INA3221_SOURCES = ("ina3221", "ina3221x", "simulated")
#: sources whose readings span many inferences or are counters: per-layer power not identifiable
COUNTER_SOURCES = ("nvml", "rapl")
#: schedule-fit tolerance for reads stamped only at the pass mid-point (no per-read stamps)
OLD_TOL_NS = 60_000.0
#: reads kept either side of the profiling pass
MARGIN_NS = 200_000_000


@dataclass(frozen=True)
class LayerResult:
    """One layer: net power and energy per execution with 95 % half-widths (None: refused)."""

    name: str
    power_w: float | None
    power_ci_w: float | None
    energy_j: float | None
    ci_j: float | None
    n_equations: int
    note: str = ""


@dataclass
class LayerEnergyResult:
    """What the estimator chosen for a model gave: per layer, and the fit's diagnostics."""

    method: str  # "window-lsq", "point-lsq", "in-window", "isolated", "refused", ...
    reading: str  # the reading model behind the choice, in words
    ok: bool
    reason: str
    layers: list[LayerResult]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _manifest_sensor(data: ResultData) -> dict[str, Any]:
    return dict((data.manifest or {}).get("sensor") or {})


def total_rails(data: ResultData) -> list[dict[str, Any]]:
    """The manifest's rail descriptions that make up the total."""
    sensor = _manifest_sensor(data)
    total = sensor.get("total") or {}
    names = total.get("sum") or ([total["rail"]] if total.get("rail") else [])
    rails = [r for r in sensor.get("rails") or [] if isinstance(r, dict)]
    return [r for n in names for r in rails if r.get("label") == n]


def _closest_conv(us: float) -> int:
    return min(INA3221_CONV_US, key=lambda c: abs(c - us))


def reading_model(data: ResultData, rail: dict[str, Any]) -> tuple[ReadingModel | None, str]:
    """The reading model of a total rail's power reading (current for mV x mA), and in words.

    From the rail's ``reading_models`` where it states a window mean with a schedule; for an
    INA3221 source without one (written before reading models), from the chip's
    ``update_interval`` and ``samples``; None with the reason where per-layer power cannot be
    had (counter, or no description)."""
    sensor = _manifest_sensor(data)
    source = str(sensor.get("source") or "")
    models = rail.get("reading_models") or {}
    qty = "current" if rail.get("derivation") == "v_x_i" else "power"
    rm = models.get(qty) or models.get("energy") or {}
    kind = rm.get("kind")
    if kind == "window_mean" and rm.get("schedule"):
        sch = rm["schedule"]
        cycle = float(sch["period_us_nominal"]) * 1e3
        window = float(rm.get("window_us") or sch["conversion_us"] * sch.get("samples", 1)) * 1e3
        wait = rm.get("read") == "waits_for_conversion"
        lag = cycle - float(sch["end_offset_us_nominal"]) * 1e3 if wait else 0.0
        return (ReadingModel("window", window, cycle, "wait" if wait else "continuous", lag,
                             f"{source} {rail.get('label')}: window mean of {window / 1e3:g} us "
                             f"every {cycle / 1e3:g} us (reading model)"),
                "window mean (manifest reading model)")  # fmt: skip
    if source in INA3221_SOURCES:
        dev = next((d for d in sensor.get("devices") or [] if isinstance(d, dict)
                    and d.get("update_interval")), {})  # fmt: skip
        try:
            ui_ms = float(dev.get("update_interval") or 7)
            samples = int(dev.get("samples") or 1)
        except (TypeError, ValueError):
            ui_ms, samples = 7.0, 1
        # enabled channels: where the directory says; else the Jetson boards' three (a chip's
        # rails in the manifest may be a selection, so their count says nothing)
        en = dev.get("enabled_channels") or dev.get("enabled")
        n = len(en) if isinstance(en, list) and en else 3
        n = min(max(n, 1), 3)
        conv = _closest_conv(ui_ms * 1000.0 / (2 * n * samples))
        m = ReadingModel.ina3221(channel=1, enabled=tuple(range(1, n + 1)), shunt_us=conv,
                                 bus_us=conv, samples=samples)  # fmt: skip
        return m, (f"window mean (INA3221 from update_interval={ui_ms:g} ms, samples={samples}, "
                   f"{n} channel(s): no reading model in this directory)")
    if kind == "counter" or source in COUNTER_SOURCES:
        return None, (f"{source or 'this source'} reports "
                      f"{'an energy counter' if kind == 'counter' else 'power'} whose every "
                      "value spans many inferences: per-layer power is not identifiable from it "
                      "(only the energy per inference is)")
    if kind == "instant" or source:
        return ReadingModel.instant(source), "instant (point-like)"
    return None, "the directory does not say what a reading is"


def _runs(m: ModelData, origin_ns: int) -> tuple[ProfiledRuns | None, str]:
    lay = m.layers
    if lay is None or not lay.names:
        return None, "no profiled layers"
    counts = np.diff(lay.offsets)
    if counts.min() != counts.max():
        return None, (f"layers have different numbers of profiled runs ({int(counts.min())}.."
                      f"{int(counts.max())}): runs cannot be matched across layers")
    R, L = int(counts[0]), len(lay.names)
    end = np.rint(lay.end * 1e9).astype(np.int64).reshape(L, R).T + origin_ns
    start = end - np.rint(lay.ms * 1e6).astype(np.int64).reshape(L, R).T
    return ProfiledRuns(tuple(lay.names), start, end), ""


def _reads(path: Path, label: str, derivation: str, t0: int, t1: int, latch: str = "continuous"
           ) -> tuple[RailReads | None, bool]:
    """The rail's reads inside [t0, t1] from the samples file: (reads, per-read stamps used).
    Anchored at each read's start (``wait`` latch: its end, when the fresh value arrived), or
    at the pass mid-point where the file has no per-read stamps (v1)."""
    mv, ma, uw = f"{label}_mV", f"{label}_mA", f"{label}_uW"
    rs = f"{label}_read_{'end' if latch == 'wait' else 'start'}_ns"
    s = samples_csv.read(path, want=(), optional=(mv, ma, uw, rs))
    stamped = rs in s.values and bool(np.isfinite(s.values[rs]).any())
    anchor = s.values[rs] if stamped else s.t_ns.astype(np.float64)
    if derivation == "v_x_i" and ma in s.values and mv in s.values:
        cur, vol = s.values[ma], s.values[mv]
    elif uw in s.values:
        cur, vol = s.values[uw] / 1000.0, np.full(len(s), 1000.0)
    else:
        return None, stamped
    keep = np.isfinite(anchor) & (s.t_ns >= t0) & (s.t_ns <= t1)
    a = anchor[keep].astype(np.int64)
    o = np.argsort(a, kind="stable")
    return RailReads(a[o], cur[keep][o], vol[keep][o], label), stamped


def _from_fit(fit: LayerFit) -> list[LayerResult]:
    return [LayerResult(x.name, x.power_w, x.power_ci_w, x.energy_j, x.ci_j, x.n_equations,
                        x.note) for x in fit.layers]  # fmt: skip


def _diag(fit: LayerFit, stamped: bool) -> dict[str, Any]:
    s = fit.summary
    out: dict[str, Any] = {
        "method": s.method, "rail": s.rail, "offset_us": s.offset_ns / 1e3,
        "offset_se_us": s.offset_se_ns / 1e3, "offset_self_calibrated": s.offset_searched,
        "per_read_stamps": stamped, "window_us": s.window_ns / 1e3,
        "conversions": s.n_conversions, "equations": s.n_equations, "runs": s.n_runs,
        "outlier_runs": s.n_outlier_runs, "condition": s.condition,
        "residual_rms_w": s.residual_rms_w, "gap_power_w": s.gap_power_w,
        "sum_energy_uj": s.sum_energy_j * 1e6,
        "pass_energy_per_inference_uj": s.pass_energy_per_inference_j * 1e6,
        "inconsistent_reads": s.inconsistent_reads, "notes": list(s.notes),
    }
    if s.schedule is not None:
        sc = s.schedule
        out["schedule"] = {"ok": sc.ok, "reason": sc.reason, "period_us": sc.period_ns / 1e3,
                           "period_error": sc.period_error if sc.nominal_ns else math.nan,
                           "consistent": sc.consistent, "residual_rms_us": sc.residual_rms_ns / 1e3,
                           "blocks": len(sc.blocks)}  # fmt: skip
    return out


def _isolated(data: ResultData, m: ModelData) -> list[LayerResult] | None:
    """The isolation pass's figures (``jetpower_layer_energy.json``), where the model has them."""
    from jetpower.report.isolated import load_isolated

    try:
        iso = load_isolated(data.path / m.name)
    except ResultError:
        return None
    if iso is None:
        return None
    out = []
    for r in iso.rows:
        ci = None if r.energy_ci_uj is None else (r.energy_ci_uj[1] - r.energy_ci_uj[0]) / 2
        out.append(LayerResult(r.layer, None, None, r.energy_uj * 1e-6,
                               None if ci is None else ci * 1e-6, 0,
                               f"isolation pass ({r.method})"))  # fmt: skip
    return out or None


def estimate_model(  # noqa: PLR0911  (each refusal returns its reason)
        data: ResultData, m: ModelData, idle_w: float, idle_ci_w: float, *,
        n_boot: int = 200) -> LayerEnergyResult | None:
    """The per-layer energy of ``m`` by the estimator its total rail's reading model calls for;
    None where the directory has no manifest (the caller keeps the in-window estimator)."""
    if data.manifest is None or m.layers is None:
        return None
    names = list(m.layers.names)
    rails = total_rails(data)
    if not rails:
        return _refused(names, "the manifest names no total rail", "unknown")
    models = [reading_model(data, r) for r in rails]
    reading = "; ".join(w for _, w in models)
    if any(rm is None for rm, _ in models):
        why = next(w for rm, w in models if rm is None)
        iso = _isolated(data, m)
        if iso is not None:
            return LayerEnergyResult("isolated", reading, True, why, iso)
        return _refused(names, why, reading, method="not-identifiable")
    runs, why = _runs(m, data.origin_ns)
    if runs is None:
        return _refused(names, why, reading)
    path = data.path / SAMPLES
    if not path.exists():
        return _refused(names, f"no {SAMPLES}: the per-layer fit needs the rail's reads", reading)
    # the pass and a margin for the schedule fit's edges: the phases around it (warm-up,
    # timing) add nothing to the per-layer equations
    t0 = int(runs.start_ns[0, 0]) - MARGIN_NS
    t1 = int(runs.end_ns[-1, -1]) + MARGIN_NS
    fits: list[LayerFit] = []
    stamped = False
    for rail, (rm, _) in zip(rails, models):
        assert rm is not None
        reads, stamped = _reads(path, str(rail.get("label")), str(rail.get("derivation")), t0, t1,
                                rm.latch)
        if reads is None:
            return _refused(names, f"{SAMPLES} has no readings of rail {rail.get('label')}",
                            reading)  # fmt: skip
        # a share of the idle per rail: the estimator works net of idle, the sum is what counts
        share = 1.0 / len(rails)
        sched = None
        if rm.kind == "window" and not stamped:
            # the pass mid-point sits a pass's worth of reads from the latch, with the pass's
            # jitter: a wider tolerance for the changes' intervals
            sched = fit_schedule(reads.anchor_ns, reads.current_ma, rm, tol_ns=OLD_TOL_NS)
        fits.append(estimate_layers(reads, rm, runs, idle_w * share, schedule=sched,
                                    idle_ci_w=idle_ci_w * share, n_boot=n_boot))  # fmt: skip
    bad = next((f for f in fits if not f.summary.ok), None)
    if bad is not None:
        res = _refused(names, bad.summary.reason, reading, method=bad.summary.method)
        res.diagnostics = _diag(bad, stamped)
        return res
    if len(fits) == 1:
        layers = _from_fit(fits[0])
    else:
        summed = sum_rails(fits)
        layers = [LayerResult(n, None, None, e, ci,
                              min(f.layers[j].n_equations for f in fits),
                              next((f.layers[j].note for f in fits if f.layers[j].note), ""))
                  for j, (n, e, ci) in enumerate(summed)]  # fmt: skip
    diag = _diag(fits[0], stamped)
    if len(fits) > 1:
        diag["rails"] = [_diag(f, stamped) for f in fits]
        diag["sum_energy_uj"] = sum(x.energy_j or 0.0 for x in layers) * 1e6
    return LayerEnergyResult(fits[0].summary.method, reading, True, "", layers, diag)


def _refused(names: list[str], reason: str, reading: str, method: str = "refused"
             ) -> LayerEnergyResult:
    return LayerEnergyResult(method, reading, False, reason,
                             [LayerResult(n, None, None, None, None, 0, reason) for n in names])


# ---------------------------------------------------------------------------------------------
# the simulated run's self-check


TRUTH_FILE = "jetpower_simulator_truth.json"


def self_check(data: ResultData, per_model: dict[str, LayerEnergyResult],
               idle_w: float = math.nan) -> dict[str, Any] | None:
    """:func:`_self_check` with its one printed ``line``, whatever the outcome (a refusal too)."""
    out = _self_check(data, per_model, idle_w)
    if out is not None:
        out["line"] = self_check_line(out)
    return out


def _self_check(data: ResultData, per_model: dict[str, LayerEnergyResult],
                idle_w: float) -> dict[str, Any] | None:
    """Per-layer energies against the simulator's truth file (simulated runs only): median and
    p90 relative error, 95 % interval coverage, over the layers both have; None without a truth
    file.

    The simulator's truth is net of *its* idle level (``idle_mw``); the report's estimates are
    net of the idle phase it measured, which on the simulator also follows this machine's CPU
    load.  Each estimate is therefore put on the simulator's idle first (energy + (report idle -
    simulator idle) x the latency behind the estimate), and the truth per execution is the
    simulator's net power x that same latency: what is checked is the per-layer attribution,
    not the idle baseline (the report states that separately)."""
    import json

    path = data.path / TRUTH_FILE
    if not data.simulated or not path.exists():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
        layers = truth["layers"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"ok": False, "reason": f"{TRUTH_FILE} unreadable"}
    try:
        delta = idle_w - float(truth["idle_mw"]) * 1e-3 if math.isfinite(idle_w) else 0.0
    except (KeyError, TypeError, ValueError):
        delta = 0.0
    errs: list[float] = []
    covered = 0
    refused = 0
    n = 0
    for res in per_model.values():
        for lay in res.layers:
            t = layers.get(lay.name)
            if not isinstance(t, dict) or not t.get("executions"):
                continue
            n += 1
            if lay.energy_j is None:
                refused += 1
                continue
            lat = (lay.energy_j / lay.power_w if lay.power_w else
                   float(t["mean_duration_ns"]) * 1e-9)  # fmt: skip
            e_true = float(t["net_mw"]) * 1e-3 * lat
            if e_true <= 0:
                n -= 1
                continue
            e_est = lay.energy_j + delta * lat
            err = abs(e_est - e_true) / e_true
            errs.append(err)
            if lay.ci_j is not None and abs(e_est - e_true) <= lay.ci_j:
                covered += 1
    if not n:
        return {"ok": False, "reason": "no profiled layer is in the simulator's truth"}
    if not errs:
        why = "; ".join(sorted({f"{k}: {r.reason}" for k, r in per_model.items() if r.reason}))
        return {"ok": False, "layers": n, "refused": refused,
                "reason": f"every layer refused ({why or 'no estimate'})"}
    a = np.asarray(errs)
    return {"ok": bool(a.size), "layers": n, "refused": refused,
           "median_error": float(np.median(a)) if a.size else math.nan,
           "p90_error": float(np.percentile(a, 90)) if a.size else math.nan,
           "coverage": covered / a.size if a.size else math.nan,
           "methods": sorted({r.method for r in per_model.values()}),
           "idle_rebase_w": delta}  # fmt: skip


def self_check_line(c: dict[str, Any]) -> str:
    """The one line a simulated report prints about its per-layer error."""
    if not c.get("ok"):
        return f"SIMULATED self-check: {c.get('reason', 'no estimate to check')}"
    return (f"SIMULATED self-check against the simulator's truth ({'/'.join(c['methods'])}): "
            f"per-layer energy error median {c['median_error'] * 100:.1f} %, "
            f"p90 {c['p90_error'] * 100:.1f} %, 95 % intervals cover {c['coverage'] * 100:.0f} %"
            f" of {c['layers'] - c['refused']} layers ({c['refused']} refused)")
