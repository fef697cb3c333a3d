"""The live view of a campaign on a terminal: one small panel, drawn by rich, fed by the log.

It never produces events of its own: it listens to the same structlog events that go, as JSON
lines, to a pipe (``run_started``, ``phase_started``, ``model_started``, ``model_progress``,
``sampler_heartbeat``, ``model_finished``...), so the live view and the data never disagree.
Console log lines are printed above the panel. Piped output is not touched: the CLI only opens
this view when the log goes to a terminal.

The panel shows the phase, model i/N, runs done/total of the current pass, the campaign's ETA (the
plan's guesses for the steps still to come, corrected by how long the current step has taken),
the latest total power in W, and the sampler's achieved rate and health (overruns, missed
deadlines, read errors, failed channels).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from jetpower import log as jlog
from jetpower.plan import Plan
from jetpower.plan._estimate import hms


@dataclass
class Step:
    """One step of the campaign's sequence and the plan's guess of its length (s)."""

    kind: str  # "idle", "cooldown", "benchmark"
    label: str
    guess_s: float
    done: bool = False


@dataclass
class State:
    """What the panel shows; updated from events, read by the drawing thread."""

    steps: list[Step]
    phase: str = "starting"
    model: str | None = None
    model_index: int = 0
    models: int = 0
    passes: str | None = None
    done: int | None = None
    total: int | None = None
    power_w: float | None = None
    rate_hz: float | None = None
    overruns: int = 0
    missed: int = 0
    read_errors: int = 0
    failed_channels: list[str] = field(default_factory=list)
    failed_models: list[str] = field(default_factory=list)
    simulated: bool = False
    step_started: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    current: int = -1  # index into steps

    def eta_s(self, now: float) -> float:
        """Seconds still to go: guesses of the steps to come, plus what the current one has left."""
        rest = sum(s.guess_s for i, s in enumerate(self.steps) if i > self.current and not s.done)
        if 0 <= self.current < len(self.steps):
            rest += max(0.0, self.steps[self.current].guess_s - (now - self.step_started))
        return rest

    def health(self) -> str:
        bad = []
        if self.failed_channels:
            bad.append("failed channels: " + ", ".join(self.failed_channels))
        if self.overruns:
            bad.append(f"{self.overruns} overruns")
        if self.read_errors:
            bad.append(f"{self.read_errors} read errors")
        if self.missed:
            bad.append(f"{self.missed} missed deadlines")
        return "ok" if not bad else "; ".join(bad)


def plan_steps(plan: Plan) -> list[Step]:
    """The campaign's sequence, as ``validate`` prints it, with the plan's guesses."""
    cooldown = plan.cooldown.longest_seconds
    steps = [Step("idle", "", plan.idle.seconds), Step("cooldown", "", cooldown)]
    for m in plan.models:
        steps += [Step("benchmark", m.label, plan.model_seconds(m)), Step("cooldown", "", cooldown)]
    return steps


class LiveStatus:
    """A rich ``Live`` panel over a campaign; a context manager around ``campaign.run()``."""

    def __init__(self, plan: Plan, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self.state = State(plan_steps(plan), models=len(plan.models), simulated=plan.simulated)
        self._lock = threading.Lock()
        self.console = Console(file=stream or jlog.log_stream(), highlight=False)
        self._live: Any = None
        self._remove: Any = None

    # -- events -------------------------------------------------------------------------------

    def on_event(self, ev: dict[str, Any]) -> None:
        with self._lock:
            self._apply(ev)

    def _begin(self, kind: str, label: str = "") -> None:
        s = self.state
        for i in range(s.current + 1, len(s.steps)):
            if s.steps[i].kind == kind and (not label or s.steps[i].label == label):
                for skipped in s.steps[s.current + 1 : i]:
                    skipped.done = True
                if 0 <= s.current < len(s.steps):
                    s.steps[s.current].done = True
                s.current = i
                break
        s.step_started = time.monotonic()

    def _apply(self, ev: dict[str, Any]) -> None:
        s = self.state
        name = ev.get("event")
        if name == "run_started":
            s.started = time.monotonic()
            s.simulated = bool(ev.get("simulated", s.simulated))
        elif name == "phase_started" and ev.get("phase") in ("idle", "cooldown"):
            s.phase, s.model, s.passes, s.done, s.total = str(ev["phase"]), None, None, None, None
            self._begin(str(ev["phase"]))
        elif name == "model_started":
            s.phase, s.model = "benchmark", str(ev.get("model") or "")
            s.model_index = int(ev.get("index") or 0)
            s.passes, s.done, s.total = "starting worker", None, None
            self._begin("benchmark", s.model)
        elif name == "model_skipped":
            for step in s.steps:
                if step.kind == "benchmark" and step.label == ev.get("model"):
                    step.done = True
        elif name == "worker_phase_started":
            s.passes, s.done, s.total = str(ev.get("phase")), None, None
        elif name == "model_progress":
            s.passes = str(ev.get("phase"))
            s.done, s.total = _int(ev.get("done")), _int(ev.get("total"))
        elif name == "model_failed" and ev.get("model"):
            s.failed_models.append(str(ev["model"]))
        elif name == "sampler_heartbeat":
            s.rate_hz = _float(ev.get("rate_hz"))
            if (p := _float(ev.get("avg_power_uw"))) is not None:
                s.power_w = p / 1e6
            s.overruns = _int(ev.get("overruns")) or 0
            s.missed = _int(ev.get("missed_deadlines")) or 0
            s.read_errors = _int(ev.get("read_errors")) or 0
        elif name == "phase_finished" and (p := _float(ev.get("avg_power_uw"))) is not None:
            s.power_w = p / 1e6
        elif name == "sampler_started" and ev.get("rate_hz") is not None:
            s.rate_hz = _float(ev.get("rate_hz"))
        elif name == "channel_failed" and ev.get("channel"):
            s.failed_channels.append(str(ev["channel"]))
        elif name in ("run_finished", "run_interrupted"):
            s.phase = "finished" if name == "run_finished" else "interrupted"
            s.current = len(s.steps)

    # -- drawing -------------------------------------------------------------------------------

    def render(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        with self._lock:
            s = self.state
            now = time.monotonic()
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            what = s.phase
            if s.phase == "benchmark":
                what = f"benchmark  model {s.model_index}/{s.models}  {s.model}"
                if s.passes:
                    what += f"  ({s.passes})"
            grid.add_row("phase", what)
            if s.total:
                grid.add_row("runs", f"{s.done or 0}/{s.total}")
            grid.add_row("elapsed", f"{hms(now - s.started)}    ETA {hms(s.eta_s(now))}")
            power = "-" if s.power_w is None else f"{s.power_w:.3f} W"
            rate = "-" if s.rate_hz is None else f"{s.rate_hz:.0f} Hz"
            grid.add_row("power", power + ("  (SIMULATED)" if s.simulated else ""))
            grid.add_row("sampler", f"{rate}, {s.health()}")
            if s.failed_models:
                grid.add_row("failed", ", ".join(s.failed_models))
        return Panel(grid, title="jetpower run", expand=False)

    def _print(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text.from_ansi(line), soft_wrap=True)

    def __enter__(self) -> LiveStatus:
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=4, transient=False, redirect_stdout=False,
                          redirect_stderr=False)
        self._remove = jlog.add_listener(self.on_event)
        jlog.redirect_console(self._print)
        self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        jlog.redirect_console(None)
        if self._remove is not None:
            self._remove()
        if self._live is not None:
            self._live.stop()


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
