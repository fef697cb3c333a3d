"""The report on synthetic raw data whose true answers are known (tests/synthetic.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from jetpower.cli import main
from jetpower.report import ResultError, attribute_layers, build_report, load_result
from jetpower.report._parse import stamps_to_posix_ns
from jetpower.report.build import BuildResult
from jetpower.timebase import Anchor, parse_wall_text, wall_text
from tests.synthetic import SMALL, TINY, Truth, stamp_bytes, write_result

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def jp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Truth, BuildResult]:
    root = tmp_path_factory.mktemp("jp") / "result"
    truth = write_result(root, [TINY, SMALL], layout="jetpower", failed=("broken",))
    return truth, build_report(root)


@pytest.fixture(scope="module")
def orig(tmp_path_factory: pytest.TempPathFactory) -> tuple[Truth, BuildResult]:
    root = tmp_path_factory.mktemp("orig") / "result"
    truth = write_result(root, [TINY, SMALL], layout="original")
    return truth, build_report(root, root.parent / "rep")


def _check_layers(truth: Truth, res: BuildResult) -> None:
    checked = refused = 0
    for mr in res.report.models:
        if mr.model.name not in truth.models:
            continue
        t = truth.models[mr.model.name]
        for row in mr.layers:
            e = row.energy
            if e.energy_j is None:
                assert e.n_samples < res.report.min_layer_samples
                refused += 1
                continue
            assert e.energy_j == pytest.approx(t.layer_energy_j[e.name], rel=0.05), e.name
            assert e.n_samples >= res.report.min_layer_samples
            checked += 1
    assert checked == 8
    assert refused == 1  # tinynet/layer_003: 5 us at 1 kHz over 3000 runs, ~15 samples


def test_layer_energy_within_5_percent(jp: tuple[Truth, BuildResult]) -> None:
    """Each layer with enough samples gets its known energy within 5 %; the short one is refused."""
    _check_layers(*jp)


def test_refused_layer_says_so(jp: tuple[Truth, BuildResult]) -> None:
    """A layer with too few samples has no energy, a note, and says so in the CSV and report.md."""
    res = jp[1]
    row = next(r for m in res.report.models for r in m.layers if r.energy.name.endswith("003"))
    assert row.energy.energy_j is None and "no estimate" in row.energy.note
    with (res.out / "layers.csv").open() as f:
        rec = next(r for r in csv.DictReader(f) if r["layer"].endswith("003"))
    assert rec["energy_uj"] == "" and "no estimate" in rec["note"]
    assert "too few samples" in (res.out / "report.md").read_text()


def test_energy_per_inference_within_1_percent(jp: tuple[Truth, BuildResult]) -> None:
    """Energy per inference over the worker's timing window is within 1 % of the exact value."""
    truth, res = jp
    for mr in res.report.models:
        if mr.model.name in truth.models:
            t = truth.models[mr.model.name]
            assert mr.model.timing_source == "worker"
            assert mr.runs == t.runs
            assert mr.energy_per_inference_j == pytest.approx(t.energy_per_inference_j, rel=0.01)
            assert mr.latency is not None
            assert mr.latency.mean == pytest.approx(t.latency_mean_s, rel=1e-9)


def test_idle_gross_and_net(jp: tuple[Truth, BuildResult]) -> None:
    """Idle comes from the idle-phase samples; gross is the exact mean; net = gross - idle."""
    truth, res = jp
    idle = res.report.idle
    assert idle.source == "idle-phase samples" and idle.n_samples == 2000
    assert idle.power_w == pytest.approx(truth.idle_w, abs=3 * idle.ci_w + 1e-4)
    for mr in res.report.models:
        if mr.model.name in truth.models:
            p = mr.power
            assert p is not None and p.n_samples > 1000
            assert p.mean_gross_w == pytest.approx(truth.models[mr.model.name].mean_gross_w,
                                                   rel=0.01)  # fmt: skip
            assert p.mean_net_w == pytest.approx(p.mean_gross_w - idle.power_w, rel=1e-12)
            assert 0 < p.ci_gross_w < 0.05 * p.mean_gross_w


def test_failed_model_is_reported(jp: tuple[Truth, BuildResult]) -> None:
    """A model the manifest marks failed is listed with its reason and no figures."""
    mr = next(m for m in jp[1].report.models if m.model.name == "broken")
    assert mr.model.status == "failed" and mr.power is None
    assert "synthetic failure" in (jp[1].out / "report.md").read_text()


def test_original_layout(orig: tuple[Truth, BuildResult]) -> None:
    """Original files only: wall clock, idle from idling_power.json, estimated timing window."""
    truth, res = orig
    data = res.report.data
    assert data.clock == "wall" and data.manifest is None and not data.simulated
    assert res.report.idle.source == "idling_power.json avg_idle_power"
    assert res.report.idle.power_w == pytest.approx(truth.idle_w, rel=0.005)
    _check_layers(truth, res)
    for mr in res.report.models:
        assert mr.model.timing_source == "estimated"
        assert any("ESTIMATED" in n for n in mr.model.notes)
        t = truth.models[mr.model.name]
        assert mr.energy_per_inference_j == pytest.approx(t.energy_per_inference_j, rel=0.03)
    md = (res.out / "report.md").read_text()
    assert "ESTIMATED" in md and "SIMULATED" not in md
    assert not (res.out / "plots" / "idle_power_hist.png").exists()


def test_plots_and_report_files(jp: tuple[Truth, BuildResult]) -> None:
    """report.md embeds valid, non-empty PNGs, carries the SIMULATED banner; CSVs are plain (a
    header row first, a simulated column) and their versions are in the JSON sidecar."""
    out = jp[1].out
    pngs = sorted((out / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"campaign_power.png", "idle_power_hist.png", "layers_tinynet.png"} <= names
    md = (out / "report.md").read_text()
    for p in pngs:
        assert p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG
        assert f"plots/{p.name}" in md
    assert md.count("SIMULATED DATA") >= 2
    sidecar = json.loads((out / "jetpower_report.json").read_text())
    for name, fmt in (("models.csv", "jetpower.report-models"),
                      ("layers.csv", "jetpower.report-layers")):  # fmt: skip
        lines = (out / name).read_text().splitlines()
        assert lines[0].startswith(("model,", "model\t")) and lines[0].endswith(",simulated")
        assert sidecar["tables"][name]["format"] == fmt
    with (out / "models.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["simulated"] for r in rows} == {"true"}
    assert [r["model"] for r in rows] == ["tinynet", "smallnet", "broken"]
    assert float(rows[0]["energy_per_inference_mj"]) > 0


def test_attribute_layers_on_arrays() -> None:
    """The library call on plain arrays: constant power per layer comes back, sparse is refused."""
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 100, 100_000))  # ~1 kHz
    starts = np.arange(0, 99, 0.01)  # one run every 10 ms
    power = np.where((t % 0.01) < 0.004, 9e6, 3e6)  # layer a: first 4 ms of each run at 9 W
    wins = {"a": (starts, starts + 0.004), "b": (starts + 0.004, starts + 0.004 + 1e-6)}
    a, b = attribute_layers(t, power, wins, idle_uw=1e6)
    assert a.mean_net_w == pytest.approx(8.0) and a.energy_j == pytest.approx(0.032, rel=1e-6)
    assert a.n_samples > 30_000 and a.ci_energy_j is not None
    assert b.energy_j is None and b.n_samples < 30


def test_stamps_parse_like_timebase(tmp_path: Path) -> None:
    """The vectorised wall-text reader agrees with timebase.parse_wall_text to the microsecond."""
    anchor = Anchor(1_709_294_400_123_456_789, 10**12)
    mono = 10**12 + np.array([0, 999, 1_000_000_001, 86_399_999_999_999], dtype=np.int64)
    text = [b.decode() for b in stamp_bytes(mono, anchor).view("S24").ravel()]
    assert text == [wall_text(int(m), anchor) for m in mono]
    got = stamps_to_posix_ns(text, "test")
    want = [round(parse_wall_text(s) * 1e6) * 1000 for s in text]
    assert got.tolist() == want
    with pytest.raises(ResultError, match="bad timestamp"):
        stamps_to_posix_ns(["20240101-12:00:00.00000x"], "test")


def test_unknown_versions_rejected(tmp_path: Path) -> None:
    """A manifest or samples file of an unknown version is refused with a clear error."""
    root = tmp_path / "r"
    write_result(root, [SMALL])
    man = json.loads((root / "jetpower_manifest.json").read_text())
    (root / "jetpower_manifest.json").write_text(json.dumps({**man, "version": 99}))
    with pytest.raises(ResultError, match="version 99 unknown"):
        load_result(root)
    (root / "jetpower_manifest.json").write_text(json.dumps(man))
    csvp = root / "jetpower_samples.csv"
    csvp.write_text(csvp.read_text().replace("# jetpower-samples v1", "# jetpower-samples v9", 1))
    with pytest.raises(ResultError, match="'9' unknown"):
        load_result(root)


def test_out_dir_rules_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI writes the default out dir, refreshes its own report, refuses foreign content."""
    root = tmp_path / "r"
    write_result(root, [SMALL], simulated=False)
    assert main(["report", str(root)]) == 0
    out = root / "report"
    assert "SIMULATED" not in (out / "report.md").read_text()
    (out / "notes.txt").write_text("mine")
    assert main(["report", str(root)]) == 0  # a previous report: refreshed
    assert (out / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_bytes(b"x")
    assert main(["report", str(root), "--out", str(other)]) == 2
    assert "not a previous jetpower report" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_samples_split_over_several_files_are_joined(tmp_path: Path) -> None:
    """A resumed or restarted run's samples files (listed in the manifest) make one trace."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    write_result(whole, [TINY])
    write_result(split, [TINY])
    lines = (split / "jetpower_samples.csv").read_text().splitlines(keepends=True)
    head, body = lines[:2], lines[2:]
    half = len(body) // 2
    (split / "jetpower_samples.csv").write_text("".join(head + body[:half]))
    (split / "jetpower_samples.resume1.csv").write_text("".join(head + body[half:]))
    manifest = json.loads((split / "jetpower_manifest.json").read_text())
    manifest.setdefault("sampler", {})["samples_files"] = [
        "jetpower_samples.csv", "jetpower_samples.resume1.csv"]
    (split / "jetpower_manifest.json").write_text(json.dumps(manifest))
    a, b = load_result(whole), load_result(split)
    assert b.t.size == a.t.size
    assert np.array_equal(a.t, b.t)
    assert "jetpower_samples.resume1.csv" in b.trace_source


def test_report_out_never_cleans_through_a_symlink(tmp_path: Path) -> None:
    """Refreshing an earlier report whose plots/ (and a listed file) were replaced by links to
    elsewhere removes the links themselves, never the files they point to."""
    root = tmp_path / "r"
    write_result(root, [SMALL], simulated=False)
    out = tmp_path / "rep"
    assert main(["report", str(root), "--out", str(out)]) == 0
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in plots:
        (victim / name).write_bytes(b"precious")
    (tmp_path / "victim.md").write_text("precious")
    for p in (out / "plots").iterdir():
        p.unlink()
    (out / "plots").rmdir()
    (out / "plots").symlink_to(victim, target_is_directory=True)
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(tmp_path / "victim.md")
    assert main(["report", str(root), "--out", str(out)]) == 0
    assert sorted(p.name for p in victim.iterdir()) == plots
    assert all(p.read_bytes() == b"precious" for p in victim.iterdir())
    assert (tmp_path / "victim.md").read_text() == "precious"
    assert not (out / "plots").is_symlink() and sorted(
        p.name for p in (out / "plots").iterdir()) == plots
    assert not (out / "report.md").is_symlink()


def test_aside_attempts_are_not_models(tmp_path: Path) -> None:
    """A model directory set aside by --resume (``<name>.attempt-1``) is not listed as a model;
    the report notes that it exists."""
    import shutil

    root = tmp_path / "r"
    write_result(root, [SMALL])
    name = SMALL.name
    shutil.copytree(root / name, root / f"{name}.attempt-1")
    data = load_result(root)
    assert [m.name for m in data.models] == [name]
    assert any(f"{name}.attempt-1" in n for n in data.notes)
