"""Helpers for the campaign tests: small plans, the CLI as a subprocess, its event stream."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TESTS = Path(__file__).parent
REPO = TESTS.parent


def write_plan(tmp_path: Path, models: Sequence[str], *, name: str = "t", idle: float = 1,
               cooldown: float = 0.5, sampler: str = "", benchmark: str = "") -> Path:
    """A small campaign on the simulated sensor and eager PyTorch on the CPU.

    A model is a name, or an inline TOML table (``{name = "...", timeout_seconds = 4}``).
    """
    quoted = ", ".join(m if m.startswith("{") else json.dumps(m) for m in models)
    text = f"""models = [{quoted}]
[run]
name = "{name}"
result_dir = "unused"
[idle]
seconds = {idle}
[cooldown]
mode = "fixed"
seconds = {cooldown}
[sampler]
source = "simulated"
rate_hz = 1000
heartbeat_seconds = 0.5
{sampler}
[benchmark]
backend = "torch"
device = "cpu"
dtype = "float32"
warmup = 2
runs = 20
profile_runs = 5
timeout_seconds = 60
{benchmark}
"""
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def env() -> dict[str, str]:
    """The environment of a campaign: tests/ importable (misbehaving model factories)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), e.get("PYTHONPATH", "")) if p)
    return e


def jp(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``python -m jetpower ARGS`` to its end."""
    return subprocess.run([sys.executable, "-m", "jetpower", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env(), cwd=REPO)


class Live:
    """A ``jetpower run`` in progress: its stdout read line by line as events."""

    def __init__(self, plan: Path, result_dir: Path, *extra: str) -> None:
        self.result_dir = result_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jetpower", "run", str(plan), "--result-dir", str(result_dir),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err: list[str] = []
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                self.bad_lines.append(line)
                continue
            self._q.put(ev)
        self._q.put(None)

    def wait_event(self, pred: Callable[[dict[str, Any]], bool] | str,
                   timeout: float = 60) -> dict[str, Any]:
        """The next event (after those seen) that ``pred`` accepts (or of that name)."""
        if isinstance(pred, str):
            name = pred
            pred = lambda e: e.get("event") == name  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"event not seen within {timeout} s") from None
            if ev is None:
                raise AssertionError(f"the run ended without the event; stderr: {self.stderr}")
            self.events.append(ev)
            if pred(ev):
                return ev

    def finish(self, timeout: float = 60) -> int:
        """Wait for the end (failing on a hang); every remaining event is read."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"jetpower run did not end within {timeout} s") from None
        self._reader.join(5)
        self._err_reader.join(5)
        while (ev := self._q.get_nowait() if not self._q.empty() else None) is not None:
            self.events.append(ev)
        assert not self.bad_lines, f"stdout lines that are not JSON: {self.bad_lines[:3]}"
        return self.proc.returncode

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of the live children of ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append((int(p.name), cmd))
    return out


def wait_child(pid: int, marker: str, timeout: float = 30) -> int:
    """The pid of the child of ``pid`` whose command line holds ``marker``, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cpid, cmd in children(pid):
            if marker in cmd:
                return cpid
        time.sleep(0.05)
    raise AssertionError(f"no child with {marker!r} in its command line within {timeout} s")


def processes_mentioning(*needles: str) -> list[str]:
    """Command lines of live (not zombie) processes that contain one of ``needles``."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(f"{p.name}: {cmd[:300]}")
    return found


def assert_no_orphans(live: Live) -> None:
    """Nothing the run started is still running: no worker, sampler or simulator."""
    needles = [str(live.result_dir)]
    needles += [e["root"] for e in live.named("simulated_sensor")]
    time.sleep(0.2)
    left = processes_mentioning(*needles)
    for e in live.named("sampler_started"):
        try:
            state = Path(f"/proc/{e['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.append(f"sampler pid {e['pid']}")
    for line in left:  # do not leak them into the next test
        pid = int(line.split(":")[0].split()[-1])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


def manifest(result_dir: Path) -> dict[str, Any]:
    return json.loads((result_dir / "jetpower_manifest.json").read_text())


def log_events(result_dir: Path) -> list[dict[str, Any]]:
    """run.log.jsonl, every line parsed (fails on a line that is not JSON)."""
    return [json.loads(ln) for ln in (result_dir / "run.log.jsonl").read_text().splitlines()]


def samples(result_dir: Path, name: str = "jetpower_samples.csv") -> list[dict[str, str]]:
    """The samples CSV parsed (header checked)."""
    import csv

    lines = (result_dir / name).read_text().splitlines()
    assert lines[0] == "# jetpower-samples v2"
    rows = list(csv.DictReader(lines[1:]))
    for r in rows:
        int(r["t_ns"])
    return rows
