"""``jetpower run`` end to end through the CLI: simulated sensor, eager PyTorch on the CPU."""

from __future__ import annotations

import hashlib
import json
import re
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.campaign import REPO, Live, jp, log_events, manifest, samples, write_plan

# every campaign here needs workers that run models: PyTorch
pytestmark = pytest.mark.torch

MODELS = ("lenet", "tinycnn")
LINE = re.compile(r"\d{8}-\d\d:\d\d:\d\d\.\d{6},-?\d+,-?\d+(\.\d+)?")
WALL = "%Y%m%d-%H:%M:%S.%f"


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One whole campaign of two models, shared by the tests that read its output."""
    tmp = tmp_path_factory.mktemp("e2e")
    plan = write_plan(tmp, MODELS, name="e2e")
    out = tmp / "result"
    r = jp("run", str(plan), "--result-dir", str(out))
    return {"plan": plan, "dir": out, "proc": r}


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_complete_run_layout(complete: dict[str, Any]) -> None:
    """A complete run exits 0 and leaves exactly the original layout plus jetpower's files."""
    r, d = complete["proc"], complete["dir"]
    assert r.returncode == 0, r.stderr
    top = {p.name for p in d.iterdir()}
    # a simulated run also keeps the simulator's truth file (the report's self-check)
    assert top == {"idling_power.json", "jetpower_manifest.json", "jetpower_samples.csv",
                   "jetpower_simulator_truth.json", "run.log.jsonl", *MODELS}
    for m in MODELS:
        files = {str(p.relative_to(d / m)) for p in (d / m).rglob("*") if p.is_file()}
        assert {f"{m}_power_log.log", f"{m}_tensorrt.json", "trt_profiling/trt_engine_info.json",
                "trt_profiling/trt_layer_latency.json"} <= files
        assert not any(f.endswith(".tmp") or f == "jetpower_failure.json" for f in files)


def test_original_formats(complete: dict[str, Any]) -> None:
    """idling_power.json, power logs, the summary and the profiling files keep the original form."""
    d = complete["dir"]
    idle = json.loads((d / "idling_power.json").read_text())
    assert list(idle) == ["timestamp", "avg_idle_power"]
    datetime.strptime(idle["timestamp"], "%Y%m%d-%H%M%S")
    assert isinstance(idle["avg_idle_power"], float) and idle["avg_idle_power"] > 0
    for m in MODELS:
        lines = (d / m / f"{m}_power_log.log").read_text().splitlines()
        assert len(lines) > 100
        bad = [ln for ln in lines if not LINE.fullmatch(ln)]
        assert not bad, bad[:3]
        s = json.loads((d / m / f"{m}_tensorrt.json").read_text())
        assert list(s) == ["config", "total_time", "timestamp", "latencies", "avg_latency",
                           "avg_throughput"]
        assert set(s["config"]) == {"model", "dtype", "input_shape", "warmup", "runs",
                                    "optimization_level", "min_block_size", "result_dir"}
        datetime.strptime(s["timestamp"], "%Y%m%d-%H%M%S")
        assert len(s["latencies"]) == 20
        assert s["avg_latency"] == pytest.approx(sum(s["latencies"]) / 20)
        assert s["avg_throughput"] == pytest.approx(1 / s["avg_latency"])
        info = json.loads((d / m / "trt_profiling/trt_engine_info.json").read_text())
        assert set(info) >= {"Layers", "Bindings"}
        lat = json.loads((d / m / "trt_profiling/trt_layer_latency.json").read_text())
        assert list(lat) == [layer["Name"] for layer in info["Layers"]]
        for entries in lat.values():
            assert len(entries) == 5
            for ms, stamp in entries:
                assert isinstance(ms, float) and ms >= 0
                datetime.strptime(stamp, WALL)


def test_manifest_and_checksums(complete: dict[str, Any]) -> None:
    """The manifest says complete, lists phases and models, and its checksums verify."""
    d = complete["dir"]
    m = manifest(d)
    assert (m["format"], m["version"], m["status"]) == ("jetpower.manifest", 1, "complete")
    assert m["simulated"] is True
    assert [(p["name"], p["model"]) for p in m["phases"]] == [
        ("idle", None), ("cooldown", None), ("benchmark", "lenet"), ("cooldown", None),
        ("benchmark", "tinycnn"), ("cooldown", None)]
    assert all(p["start_ns"] < p["end_ns"] and p["samples"] > 0 for p in m["phases"])
    assert {k: v["status"] for k, v in m["models"].items()} == dict.fromkeys(MODELS, "done")
    sums = m["checksums"]
    for must in ("idling_power.json", "jetpower_samples.csv", "lenet/lenet_power_log.log",
                 "tinycnn/trt_profiling/trt_layer_latency.json"):
        assert must in sums
    for rel, digest in sums.items():
        assert digest == "sha256:" + hashlib.sha256((d / rel).read_bytes()).hexdigest(), rel


def _wall(text: str) -> float:
    return datetime.strptime(text, WALL).timestamp()


def test_layer_windows_inside_power_log(complete: dict[str, Any]) -> None:
    """Every layer's window [end - ms, end] lies inside its model's power-log window."""
    d = complete["dir"]
    for m in MODELS:
        lines = (d / m / f"{m}_power_log.log").read_text().splitlines()
        first, last = _wall(lines[0].split(",")[0]), _wall(lines[-1].split(",")[0])
        lat = json.loads((d / m / "trt_profiling/trt_layer_latency.json").read_text())
        for name, entries in lat.items():
            for ms, stamp in entries:
                end = _wall(stamp)
                assert first <= end - ms / 1000 and end <= last, (m, name, stamp)


def test_idle_power_is_mean_of_idle_samples(complete: dict[str, Any]) -> None:
    """avg_idle_power is the mean total power of the samples inside the idle phase's window."""
    d = complete["dir"]
    m = manifest(d)
    (idle,) = [p for p in m["phases"] if p["name"] == "idle"]
    vals = [float(r["total_uW"]) for r in samples(d)
            if idle["start_ns"] <= int(r["t_ns"]) <= idle["end_ns"] and r["total_uW"]]
    assert len(vals) == idle["samples"] > 500
    avg = json.loads((d / "idling_power.json").read_text())["avg_idle_power"]
    assert avg == pytest.approx(sum(vals) / len(vals), rel=1e-12)
    assert m["idle"]["avg_power_uw"] == avg


def test_log_is_json_lines_with_events(complete: dict[str, Any]) -> None:
    """stdout and run.log.jsonl are JSON lines with the run's events, run and model bound."""
    d, r = complete["dir"], complete["proc"]
    out = [json.loads(ln) for ln in r.stdout.splitlines()]
    logged = log_events(d)
    assert [e["event"] for e in out] == [e["event"] for e in logged]
    names = {e["event"] for e in logged}
    assert names >= {"run_started", "sampler_started", "phase_started", "phase_finished",
                     "model_started", "model_progress", "model_finished", "sampler_heartbeat",
                     "run_finished"}
    assert logged[0]["event"] == "run_started" and logged[-1]["event"] == "run_finished"
    assert all(e["run"] == "e2e" for e in logged)
    for e in logged:
        if e["event"] in ("model_started", "model_progress", "model_finished"):
            assert e["model"] in MODELS
    assert [e["model"] for e in logged if e["event"] == "model_finished"] == list(MODELS)


def test_second_run_into_same_dir_refused(complete: dict[str, Any]) -> None:
    """A run into a non-empty result directory is refused (exit 2) and changes nothing."""
    d = complete["dir"]
    before = _tree(d)
    r = jp("run", str(complete["plan"]), "--result-dir", str(d))
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert _tree(d) == before


def test_resume_complete_refused(complete: dict[str, Any]) -> None:
    """--resume of a complete run is refused (exit 2) and changes nothing."""
    d = complete["dir"]
    before = _tree(d)
    r = jp("run", str(complete["plan"]), "--result-dir", str(d), "--resume")
    assert r.returncode == 2 and "complete run" in r.stderr and "Traceback" not in r.stderr
    assert _tree(d) == before


@pytest.mark.slow
def test_resume_interrupted_run(tmp_path: Path) -> None:
    """--resume skips the models complete and verified, re-runs the rest, keeps the old attempt."""
    plan = write_plan(tmp_path, MODELS)
    d = tmp_path / "result"
    live = Live(plan, d)
    try:
        live.wait_event(lambda e: e.get("event") == "model_started" and e["model"] == "tinycnn")
        live.proc.send_signal(signal.SIGINT)
        assert live.finish() == -signal.SIGINT
    finally:
        live.kill()
    first = manifest(d)
    assert first["status"] == "interrupted"
    assert first["models"]["lenet"]["status"] == "done"
    assert first["models"]["tinycnn"]["status"] == "interrupted"
    lenet_files = _tree(d / "lenet")
    r = jp("run", str(plan), "--result-dir", str(d), "--resume")
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.splitlines()]
    skipped = [e for e in events if e["event"] == "model_skipped"]
    assert [e["model"] for e in skipped] == ["lenet"]
    assert [e["model"] for e in events if e["event"] == "model_started"] == ["tinycnn"]
    m = manifest(d)
    assert m["status"] == "complete"
    assert {k: v["status"] for k, v in m["models"].items()} == dict.fromkeys(MODELS, "done")
    assert _tree(d / "lenet") == lenet_files
    assert (d / "tinycnn.attempt-1").is_dir()
    assert m["sampler"]["samples_files"] == ["jetpower_samples.csv",
                                             "jetpower_samples.resume1.csv"]
    assert {"jetpower_samples.csv", "jetpower_samples.resume1.csv"} <= set(m["checksums"])
    for rel, digest in m["checksums"].items():
        assert digest == "sha256:" + hashlib.sha256((d / rel).read_bytes()).hexdigest(), rel


@pytest.mark.parametrize("plan", sorted([REPO / "plan.toml", *(REPO / "plans").glob("*.toml")]),
                         ids=lambda p: p.name)
def test_validate_repo_plans(plan: Path) -> None:
    """Every plan in the repository is valid (as a plan: they are written for boards and GPUs
    this machine does not have; the machine checks are tests/test_preflight.py's)."""
    r = jp("validate", "--offline", str(plan))
    assert r.returncode == 0, r.stderr


def test_bad_plan_exit_2_nothing_created(tmp_path: Path) -> None:
    """A bad plan: exit 2, one message naming the key, no traceback, nothing created."""
    plan = write_plan(tmp_path, ["lenet"], benchmark="runz = 3")
    out = tmp_path / "result"
    r = jp("run", str(plan), "--result-dir", str(out))
    assert r.returncode == 2
    assert "runz" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("jetpower run: error") == 1
    assert r.stdout == ""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]


def test_window_energy_agrees_between_manifest_and_report(complete: dict[str, Any]) -> None:
    """One window, one energy: the manifest's timing-pass energy (computed by the supervisor while
    the run went on) equals the report's (computed afterwards from the whole samples file)."""
    from jetpower.report.analyse import analyse
    from jetpower.report.load import load_result

    d = complete["dir"]
    m = manifest(d)
    rep = analyse(load_result(d))
    checked = 0
    for mr in rep.models:
        timing = m["models"][mr.model.name]["energy"]["timing"]
        assert mr.power is not None, mr.model.name
        assert timing["samples"] >= 2
        assert mr.power.energy_gross_j == pytest.approx(timing["energy_uj"] * 1e-6, rel=1e-9)
        checked += 1
    assert checked == len(MODELS)
