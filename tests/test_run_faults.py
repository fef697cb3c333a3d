"""``jetpower run`` under faults, with real processes: each ends on time, leaves no process
behind, keeps what it measured readable, and says what happened in its manifest, its log and its
exit status."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.campaign import (
    Live,
    assert_no_orphans,
    log_events,
    manifest,
    processes_mentioning,
    samples,
    wait_child,
    write_plan,
)


def _readable(d: Path) -> dict:
    """The manifest parses, the samples CSV parses, the log is JSON lines; the manifest."""
    m = manifest(d)
    assert samples(d)
    log_events(d)
    return m


def _events(m: dict, name: str) -> list[dict]:
    return [e for e in m["events"] if e["event"] == name]


def test_sampler_killed_stops_run(tmp_path: Path) -> None:
    """SIGKILL to the sampler mid-run: exit 4, manifest failed with a reason naming the sampler."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet"], idle=3), d)
    try:
        pid = live.wait_event("sampler_started")["pid"]
        live.wait_event("phase_started")
        os.kill(pid, signal.SIGKILL)
        assert live.finish() == 4, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    assert m["status"] == "failed" and "sampler" in m["reason"]
    assert _events(m, "sampler_died")
    assert live.named("sampler_died") and live.named("run_failed")
    assert live.events[-1]["event"] == "run_finished"


@pytest.mark.slow
@pytest.mark.torch
def test_sampler_restarted(tmp_path: Path) -> None:
    """With restart_on_failure, a killed sampler is restarted and the run completes (exit 0)."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet"], sampler="restart_on_failure = true"), d)
    try:
        pid = live.wait_event("sampler_started")["pid"]
        live.wait_event("model_started")
        os.kill(pid, signal.SIGKILL)
        again = live.wait_event("sampler_started")
        assert again["pid"] != pid
        assert live.finish() == 0, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    assert m["status"] == "complete" and m["models"]["lenet"]["status"] == "done"
    assert _events(m, "sampler_died") and _events(m, "sampler_restarted")
    assert m["sampler"]["restarts"] == 1
    for name in m["sampler"]["samples_files"]:
        assert samples(d, name)
        assert name in m["checksums"]


@pytest.mark.slow
@pytest.mark.torch
def test_worker_killed(tmp_path: Path) -> None:
    """A SIGKILLed worker fails its model ("killed by SIGKILL"); the next model runs; exit 1."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet", "tinycnn"]), d)
    try:
        live.wait_event("model_started")
        os.kill(wait_child(live.proc.pid, "jetpower.worker"), signal.SIGKILL)
        assert live.finish() == 1, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    lenet = m["models"]["lenet"]
    assert lenet["status"] == "failed" and "killed by SIGKILL" in lenet["reason"]
    assert m["models"]["tinycnn"]["status"] == "done"
    assert m["status"] == "complete"
    (failed,) = live.named("model_failed")
    assert failed["model"] == "lenet" and "killed by SIGKILL" in failed["reason"]


@pytest.mark.slow
@pytest.mark.torch
def test_worker_hang_times_out(tmp_path: Path) -> None:
    """A worker hanging past its timeout is stopped, its model failed; the campaign goes on."""
    d = tmp_path / "result"
    plan = write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 4}', "tinycnn"],
                      idle=0.5, cooldown=0.2)
    live = Live(plan, d)
    try:
        assert live.finish(timeout=60) == 1, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    hung = m["models"]["hangs"]
    assert hung["status"] == "failed" and "timeout" in hung["reason"]
    assert hung["error_type"] == "timeout"
    assert m["models"]["tinycnn"]["status"] == "done"
    assert live.named("worker_timeout")


@pytest.mark.slow
@pytest.mark.torch
def test_worker_exit_status_recorded(tmp_path: Path) -> None:
    """Workers exiting 1 or failing with an error fail their model with the reason recorded."""
    d = tmp_path / "result"
    plan = write_plan(tmp_path, ["hang_models:exits_1", "hang_models:raises", "tinycnn"],
                      idle=0.5, cooldown=0.2)
    live = Live(plan, d)
    try:
        assert live.finish() == 1, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    models = m["models"]
    assert models["exits_1"]["status"] == "failed"
    assert models["exits_1"]["reason"] == "worker exited with status 1"
    assert models["exits_1"]["exit_code"] == 1
    assert models["raises"]["status"] == "failed"
    assert "deliberate factory failure" in models["raises"]["reason"]
    assert models["tinycnn"]["status"] == "done"
    assert {e["model"] for e in live.named("model_failed")} == {"exits_1", "raises"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_benchmark(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGINT/SIGTERM mid-benchmark: the signal is the exit status, the run is interrupted."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet", "tinycnn"], idle=0.5, cooldown=0.2), d)
    try:
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        live.proc.send_signal(sig)
        assert live.finish(timeout=8) == -sig, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    assert m["status"] == "interrupted" and m["interrupted_by"] == sig
    assert m["models"]["lenet"]["status"] == "interrupted"
    assert "tinycnn" not in m["models"] or m["models"]["tinycnn"]["status"] == "pending"
    assert live.events[-1]["event"] == "run_interrupted"
    assert log_events(d)[-1]["event"] == "run_interrupted"
    assert "Traceback" not in live.stderr


def test_supervisor_sigkilled_leaves_no_orphans(tmp_path: Path) -> None:
    """A SIGKILLed supervisor cannot clean up: its sampler, worker and simulator end themselves
    (the kernel signals them when their parent dies) and the data so far stays readable."""
    d = tmp_path / "result"
    # a worker that hangs: it cannot finish by itself before the check
    plan = write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 60}'],
                      idle=0.5, cooldown=0.2)
    live = Live(plan, d)
    try:
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        live.proc.kill()
        live.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and processes_mentioning(
            str(d), *[e["root"] for e in live.named("simulated_sensor")]
        ):
            time.sleep(0.1)
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    assert m["status"] == "running", "the manifest says how far the run got"
    assert m["models"]["hangs"]["status"] == "running"


@pytest.mark.torch
@pytest.mark.parametrize("when", ["idle", "model"])
def test_sensor_file_vanishes(tmp_path: Path, when: str) -> None:
    """A sensor file removed mid-run: channel_failed in log and manifest, run finishes, exit 3."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet"], idle=1.5), d)
    try:
        root = Path(live.wait_event("simulated_sensor")["root"])
        if when == "idle":
            live.wait_event("phase_started")
        else:
            live.wait_event("model_started")
        (victim,) = root.rglob("in1_input")
        victim.unlink()
        assert live.finish() == 3, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    m = _readable(d)
    assert m["status"] == "complete"
    assert m["models"]["lenet"]["status"] == "done"
    failed = _events(m, "channel_failed")
    assert failed and failed[0]["channel"].startswith("VDD_IN")
    assert live.named("channel_failed")
    assert live.events[-1]["event"] == "run_finished"
