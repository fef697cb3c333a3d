"""The live view on a terminal (under a pseudo-terminal) and pure JSON lines in a pipe."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetpower.campaign.progress import LiveStatus, plan_steps
from jetpower.plan import parse_plan

REPO = Path(__file__).resolve().parents[1]
PLAN = """
models = ["tinycnn"]
[run]
name = "p"
result_dir = "res"
[idle]
seconds = 2
[cooldown]
seconds = 1
[sampler]
source = "simulated"
heartbeat_seconds = 1
[benchmark]
backend = "torch"
device = "cpu"
dtype = "float32"
warmup = 5
runs = 200
profile_runs = 20
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _in_pty(argv: list[str], cwd: Path, timeout: float = 180) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (status, all it printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.torch
def test_run_on_a_terminal_shows_the_panel(tmp_path: Path) -> None:
    """On a terminal: the panel (phase, model 1/1, runs, ETA, power in W, sampler rate and
    health), console lines in human units (W, s: no raw uW or ns fields); --set is recorded."""
    (tmp_path / "plan.toml").write_text(PLAN)
    code, out = _in_pty([sys.executable, "-m", "jetpower", "run", "plan.toml",
                         "--set", "benchmark.runs=3000"], tmp_path)
    text = ANSI.sub("", out)
    assert code == 0, text[-3000:]
    assert "jetpower run" in text and "ETA" in text
    assert "model 1/1" in text and "tinycnn" in text
    assert re.search(r"power\s+\S*\d+\.\d{3} W", text), text[-2000:]
    assert re.search(r"sampler\s+\S*\d+ Hz, (ok|\d+ missed)", text), text[-2000:]
    assert re.search(r"runs\s+\S*\d+/3000", text), text[-3000:]
    assert "avg_power_uw" not in text and '{"' not in text
    assert "avg_power=" in text
    manifest = json.loads((tmp_path / "res" / "jetpower_manifest.json").read_text())
    assert manifest["plan"]["overrides"] == ["benchmark.runs=3000"]


@pytest.mark.slow
@pytest.mark.torch
def test_run_piped_is_pure_json_lines(tmp_path: Path) -> None:
    """Piped: stdout is JSON lines only (no panel, no escape), the same events, in order, as
    run.log.jsonl from the moment the log file opens."""
    (tmp_path / "plan.toml").write_text(PLAN)
    p = subprocess.run([sys.executable, "-m", "jetpower", "run", "plan.toml"], cwd=tmp_path,
                       capture_output=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert b"\x1b" not in p.stdout
    events = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert all("event" in e and "timestamp" in e for e in events)
    logged = [json.loads(x) for x in (tmp_path / "res/run.log.jsonl").read_text().splitlines()]
    assert events[-len(logged):] == logged
    assert {"run_started", "model_started", "model_progress", "sampler_heartbeat",
            "run_finished"} <= {e["event"] for e in events}


def test_probe_same_on_terminal_and_pipe() -> None:
    """probe: on a terminal the log is console lines, piped it is JSON lines (stderr), as for
    every command; the result on stdout is the same either way."""
    argv = [sys.executable, "-m", "jetpower", "probe", "--simulate", "--seconds", "0.3"]
    code, out = _in_pty(argv, REPO, timeout=60)
    assert code == 0, out
    assert "simulated_sensor" in out and '"event"' not in out
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert p.returncode == 0
    assert [json.loads(x)["event"] for x in p.stderr.splitlines()]
    assert "SIMULATED" in p.stdout


def test_panel_follows_events() -> None:
    """The panel's state from a sequence of events: model i/N, runs, power in W, health, ETA."""
    plan = parse_plan(PLAN.replace('"tinycnn"', '"tinycnn", "lenet"'))
    live = LiveStatus(plan, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert [s.kind for s in plan_steps(plan)] == ["idle", "cooldown", "benchmark", "cooldown",
                                                   "benchmark", "cooldown"]
    total = live.state.eta_s(time.monotonic())
    for ev in ({"event": "run_started", "simulated": True},
               {"event": "phase_started", "phase": "idle"},
               {"event": "sampler_heartbeat", "rate_hz": 999.5, "avg_power_uw": 7_250_000,
                "overruns": 0, "missed_deadlines": 3, "read_errors": 0},
               {"event": "phase_started", "phase": "cooldown"},
               {"event": "model_started", "model": "lenet", "index": 2, "of": 2},
               {"event": "model_progress", "model": "lenet", "phase": "timing", "done": 40,
                "total": 200}):
        live.on_event(ev)
    s = live.state
    assert (s.model, s.model_index, s.done, s.total) == ("lenet", 2, 40, 200)
    assert s.power_w == pytest.approx(7.25) and s.health() == "3 missed deadlines"
    assert s.steps[2].done and s.current == 4  # tinycnn skipped over, lenet running
    assert s.eta_s(time.monotonic()) < total
    from rich.console import Console

    console = Console(record=True, width=100, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(live.render())
    shown = console.export_text()
    assert "model 2/2" in shown and "7.250 W" in shown and "40/200" in shown and "1000 Hz" in shown
