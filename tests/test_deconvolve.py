"""Per-layer energy on known truth with INA3221 physics (tests/ina3221_truth.py): the estimator,
its refusals, the report's choice of estimator, the downstream file, a simulated campaign."""

from __future__ import annotations

import csv
import html
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from jetpower.report import build_report
from jetpower.report.deconvolve import LayerFit, ProfiledRuns, RailReads, estimate_layers
from jetpower.report.schedule import ReadingModel
from tests.campaign import jp, write_plan
from tests.ina3221_result import write_ina3221_result
from tests.ina3221_truth import Chip, Dataset, generate, resnet18_like
from tests.synthetic import SMALL, write_result

MODEL = ReadingModel.ina3221()


def _fit(ds: Dataset, model: ReadingModel = MODEL, anchor: str = "start", **kw: object
         ) -> LayerFit:
    a = ds.read_start_ns if anchor == "start" else ds.pass_mid_ns
    names = tuple(f"L{j:03d}" for j in range(ds.layer_start_ns.shape[1]))
    return estimate_layers(RailReads(a, ds.current_ma, ds.voltage_mv), model,
                           ProfiledRuns(names, ds.layer_start_ns, ds.layer_end_ns),
                           ds.truth.idle_w, **kw)  # type: ignore[arg-type]  # fmt: skip


def _errors(ds: Dataset, energies: list[float | None], cis: list[float | None]
            ) -> tuple[np.ndarray, float]:
    """Relative errors and interval coverage over the layers of >= 50 us."""
    tr = ds.truth
    big = np.flatnonzero(tr.layer_latency_s >= 50e-6)
    assert all(energies[j] is not None for j in big), "a layer of >= 50 us was refused"
    e = np.array([energies[j] for j in big], dtype=float)
    ci = np.array([cis[j] for j in big], dtype=float)
    err = np.abs(e - tr.layer_energy_j[big]) / tr.layer_energy_j[big]
    return err, float(np.mean(np.abs(e - tr.layer_energy_j[big]) <= ci))


@pytest.fixture(scope="module")
def ds3000() -> Dataset:
    return generate(resnet18_like(3000), seed=5)


def test_known_answer_3000_runs(ds3000: Dataset) -> None:
    """3000 runs of 29 layers through the chip: median error <= 5 %, p90 <= 20 %, intervals
    cover >= 80 %, the layers' sum within 2 % of the energy per inference; the old in-window
    figure on the same data is far worse (what issue 10 is about)."""
    fit = _fit(ds3000)
    assert fit.summary.ok, fit.summary.reason
    err, cov = _errors(ds3000, [x.energy_j for x in fit.layers], [x.ci_j for x in fit.layers])
    assert np.median(err) <= 0.05 and np.percentile(err, 90) <= 0.20, err
    assert cov >= 0.80
    total = sum(x.energy_j for x in fit.layers if x.energy_j is not None)
    assert total == pytest.approx(ds3000.truth.inference_energy_j, rel=0.02)
    assert fit.summary.n_outlier_runs >= 1  # outlier runs were found and left out
    lat = {x.name: x for x in fit.layers}
    j = int(ds3000.truth.outlier_runs[0]) if ds3000.truth.outlier_runs.size else 0
    assert any(x.latency_mean_all_s > x.latency_mean_s for x in lat.values()) or j == 0


def test_offset_self_calibration(ds3000: Dataset) -> None:
    """The offset found by least residual is the true latch delay + misalignment (per-read
    stamps: within 10 us); from the pass mid-point alone (old data) it is found too, and the
    estimate stays within 10 % median."""
    fit = _fit(ds3000)
    assert fit.summary.offset_searched
    assert fit.summary.offset_ns == pytest.approx(ds3000.true_offset_ns("start"), abs=10_000)
    old = ds3000.old_data()
    fo = _fit(old, anchor="mid")
    assert fo.summary.ok, fo.summary.reason
    assert fo.summary.offset_ns == pytest.approx(old.true_offset_ns("mid"), abs=40_000)
    err, _ = _errors(old, [x.energy_j for x in fo.layers], [x.ci_j for x in fo.layers])
    assert np.median(err) <= 0.10


def test_refusals_name_what_is_missing(ds3000: Dataset) -> None:
    """Too few conversions, a schedule that does not fit, windows outside the trace, a counter,
    windows spanning many inferences: every layer refused, the reason says which."""
    few = replace(ds3000, layer_start_ns=ds3000.layer_start_ns[:3],
                  layer_end_ns=ds3000.layer_end_ns[:3])  # fmt: skip
    r = _fit(few)
    assert not r.summary.ok and "conversions" in r.summary.reason
    assert all(x.energy_j is None and x.note == r.summary.reason for x in r.layers)
    late = replace(ds3000, layer_start_ns=ds3000.layer_start_ns + 10**11,
                   layer_end_ns=ds3000.layer_end_ns + 10**11)  # fmt: skip
    r = _fit(late)
    assert not r.summary.ok and "outside the trace" in r.summary.reason
    r = _fit(ds3000, ReadingModel("counter"))
    assert not r.summary.ok and "counter" in r.summary.reason
    nvml = ReadingModel("window", 100e6, 100e6)
    r = _fit(ds3000, nvml)
    assert r.summary.method == "not-identifiable" and "not identifiable" in r.summary.reason
    changed = generate(resnet18_like(1500), Chip(config_change_s=4.0), seed=6)
    r = _fit(changed)
    assert not r.summary.ok and "schedule" in r.summary.reason


@pytest.fixture(scope="module")
def ina_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("ina")
    ds = generate(resnet18_like(2000), seed=8)
    new = build_report(write_ina3221_result(base / "new", ds))
    old = build_report(write_ina3221_result(base / "old", ds, old=True))
    return {"ds": ds, "new": new, "old": old}


@pytest.mark.parametrize("which", ["new", "old"])
def test_report_picks_the_estimator_from_the_reading_model(ina_report: dict[str, object],
                                                           which: str) -> None:
    """An INA3221 directory (reading model and per-read stamps, or an old one whose rail claims
    'instant' and has neither) gets the window-mean estimator, and layers.csv keeps its headline
    columns beside the method and diagnostics."""
    ds: Dataset = ina_report["ds"]  # type: ignore[assignment]
    res = ina_report[which]
    mr = res.report.models[0]  # type: ignore[attr-defined]
    assert mr.layer_method == "window-lsq", mr.layer_reason
    assert mr.layer_diagnostics["per_read_stamps"] is (which == "new")
    assert ("update_interval" in mr.layer_reading) is (which == "old")
    err, _ = _errors(ds, [x.energy.energy_j for x in mr.layers],
                     [x.energy.ci_energy_j for x in mr.layers])  # fmt: skip
    assert np.median(err) <= (0.06 if which == "new" else 0.12)
    with (res.out / "layers.csv").open() as f:  # type: ignore[attr-defined]
        rows = list(csv.DictReader(f))
    assert {"layer", "energy_uj", "energy_ci_uj", "method", "equations", "condition",
            "residual_rms_w", "latency_median_ms"} <= set(rows[0])
    assert all(r["method"] == "window-lsq" for r in rows)


def test_downstream_layerwise_file(tmp_path: Path) -> None:
    """layerwise_power.csv: one row per profiled run and layer, the original downstream's
    columns, power with idle = without + the idle baseline, run time = that run's latency."""
    root = tmp_path / "r"
    write_result(root, [SMALL])
    res = build_report(root)
    with (res.out / "layerwise_power.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == [
        "cycle", "layer_name", "layer_type", "layer_power_including_idle_power_micro_watt",
        "layer_power_excluding_idle_power_micro_watt", "layer_run_time"]
    mr = res.report.models[0]
    lay = mr.model.layers
    assert lay is not None
    assert len(rows) == lay.ms.size
    idle_uw = res.report.idle.power_w * 1e6
    first = mr.layers[0].energy
    mine = [r for r in rows if r["layer_name"] == first.name]
    assert [int(r["cycle"]) for r in mine] == list(range(len(mine)))
    assert float(mine[0]["layer_power_excluding_idle_power_micro_watt"]) == pytest.approx(
        first.mean_net_w * 1e6, abs=0.1)
    assert float(mine[0]["layer_power_including_idle_power_micro_watt"]) == pytest.approx(
        first.mean_net_w * 1e6 + idle_uw, abs=0.2)
    np.testing.assert_allclose([float(r["layer_run_time"]) for r in mine],
                               lay.ms[lay.offsets[0]:lay.offsets[1]], rtol=1e-5)
    assert all(r["simulated"] in ("true", "false") for r in rows[:5])


def test_simulated_campaign_self_check(tmp_path: Path) -> None:
    """A short simulated campaign (real sampler, simulator and worker processes) and its report:
    the truth file is written, the samples file is v2 with per-read stamps, the estimator is the
    window-mean one, and the report states its error against the truth, labelled SIMULATED."""
    plan = write_plan(tmp_path, ["lenet"], idle=1, cooldown=0.2)
    plan.write_text(plan.read_text().replace("\nruns = 20", "\nruns = 10")
                    .replace("profile_runs = 5", "profile_runs = 150"))
    out = tmp_path / "res"
    r = jp("run", str(plan), "--result-dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    truth = json.loads((out / "jetpower_simulator_truth.json").read_text())
    assert truth["final"] and truth["bus"]["marks"] > 0
    lines = (out / "jetpower_samples.csv").read_text().splitlines()[:3]
    assert lines[0] == "# jetpower-samples v2" and "VDD_IN_read_start_ns" in lines[1]
    assert int(lines[2].split(",")[lines[1].split(",").index("VDD_IN_read_start_ns")]) > 0
    res = build_report(out)
    check = res.report.self_check
    mr = res.report.models[0]
    assert check is not None and check["line"].startswith("SIMULATED self-check"), check
    if check["ok"]:
        assert mr.layer_method == "window-lsq"
        assert check["median_error"] < 0.3  # 150 runs only: loose; the benchmark has targets
    else:
        # the simulator's file writes can lag its conversions so far that the schedule fit
        # refuses (seen under load, and in a full suite run): then the line must carry the
        # refusal's reason, never a number (issue 10 keeps this open)
        assert check["reason"] and check["line"] == f"SIMULATED self-check: {check['reason']}", (
            check, mr.layer_diagnostics)
        assert "median_error" not in check, check
    assert check["line"] in (res.out / "report.md").read_text()
    assert html.escape(check["line"]) in (res.out / "report.html").read_text()
    marker = json.loads((res.out / "jetpower_report.json").read_text())
    assert marker["numbers"]["self_check"]["line"] == check["line"]


def test_samples_csv_v2_stamps_and_v1_still_read(tmp_path: Path) -> None:
    """v2 rows carry each rail's read start/end (empty where the ring had none); a v1 file
    (no such columns) is still read, and an unknown version is refused."""
    from jetpower.acquire import samples_csv
    from jetpower.acquire.decode import Reading
    from jetpower.sensors import discover
    from jetpower.sensors.simulate import create_tree

    sensor = discover(create_tree(tmp_path / "tree"), "simulated").select(("VDD_IN",))
    w = samples_csv.Writer(sensor)
    rows = [Reading(100, ((5000, 1000, 5e6),), 5e6, 5000, 1000.0, (None,), ((90, 95),)),
            Reading(200, ((5000, 1200, 6e6),), 6e6, 5000, 1200.0, (None,), ())]
    p = tmp_path / "s.csv"
    p.write_text(w.header() + w.rows(rows))
    s = samples_csv.read(p, optional=("VDD_IN_read_start_ns", "VDD_IN_read_end_ns"))
    assert p.read_text().startswith("# jetpower-samples v2\n")
    assert s.values["VDD_IN_read_start_ns"][0] == 90 and s.values["VDD_IN_read_end_ns"][0] == 95
    assert np.isnan(s.values["VDD_IN_read_start_ns"][1])
    old = tmp_path / "old.csv"
    old.write_text("# jetpower-samples v1\nt_ns,VDD_IN_mV,VDD_IN_mA,VDD_IN_uW,total_uW\n"
                   "100,5000,1000,5000000,5000000\n")
    s1 = samples_csv.read(old, optional=("VDD_IN_read_start_ns",))
    assert s1.t_ns.tolist() == [100] and "VDD_IN_read_start_ns" not in s1.values
    old.write_text(old.read_text().replace("v1", "v7", 1))
    with pytest.raises(samples_csv.SamplesFileError, match="'7' unknown"):
        samples_csv.read(old)
