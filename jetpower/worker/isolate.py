"""Isolated per-layer energy: each leaf layer replayed alone, measured with an energy counter.

An energy counter that changes every ~100 ms (NVML on a datacenter GPU) spans dozens of whole
inferences per reading, so no estimator can tell one layer of an inference from another.  This
pass measures each layer alone instead (as NeuralPower did):

1. **Capture.**  One inference with forward pre-hooks clones every leaf call's real inputs.
2. **Replay.**  Each layer is replayed on the same device, dtype and stream, as a CUDA graph of
   many copies where capture works (``graph_used``), in *blocks*.  A block launches the layer
   over and over; a poller thread reads the counter and notes each change (an *edge*, bracketed by
   the read before and the read that saw it).  Once ``settle_s`` has passed, the block waits for
   one edge and then ``periods`` more, and stops.  Between those two edges the counter rose by
   ``dE`` over ``dt`` while the device ran the layer back to back, one execution every ``t_exec``
   (the block's device time / executions).
3. **Energy.**  Per execution, net of idle over the same time: ``(dE - P_idle * dt) / n``, with
   ``n`` the executions inside the window: counted from each launch's span for synchronous
   replays (CPU, the whole model), ``dt / t_exec`` for stream replays on a GPU, ``t_exec`` being
   the block's device time (CUDA events) / its executions.  ``P_idle`` comes from idle blocks
   (nothing launched) at the start of every round and at the end, interpolated linearly to the
   block's time.  ``dt``: where the edges of the whole pass fit a fixed update period (residual
   under a tenth of it), the number of periods times the fitted period; otherwise the difference
   of the edges' bracket midpoints.  The counter's step (1 mJ) and the edge bracket set the error
   of one block; ``periods`` update periods keep it small next to the layer's energy.
4. **Repetitions.**  Rounds visit every layer once, and the whole model once, in a fresh random
   order each round (thermal drift then spreads over all layers instead of biasing one).  After
   ``repetitions`` rounds, further rounds revisit the layers whose 95 % interval (Student t over
   the repetitions) is wider than ``precision`` times their energy (or than ``precision`` times the
   mean layer's energy, for layers that use next to none), while the time cap allows.
5. **Check.**  The whole model is measured the same way, replaying the timing pass's inference
   (``infer()``: forward, then synchronise); the ratio of the sum of the layers' energies to it
   shows what isolation loses (fusion, caches, launch gaps of a run in sequence).

Clocks and temperatures are read before and after every block where the counter gives them.
The result is ``<model>/jetpower_layer_energy.json`` (format "jetpower.layer-energy", version 1;
docs in :func:`document`), read by ``jetpower.report.isolated``.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jetpower._plan_estimate import (
    ISOLATION_COUNTER_PERIOD_S,
    ISOLATION_PERIODS,
    ISOLATION_REPETITIONS,
    ISOLATION_SETTLE_PERIODS,
    ISOLATION_SETTLE_S,
    isolation_block_seconds,
    isolation_seconds,
)
from jetpower.timebase import monotonic_ns
from jetpower.worker import _replay
from jetpower.worker.energy import CounterError, EnergyCounter

FORMAT = "jetpower.layer-energy"
VERSION = 1
FILE = "jetpower_layer_energy.json"
WHOLE = "<whole model>"
IDLE = "<idle>"
#: the interpreter's thread switch interval during the pass (default 5 ms), s
SWITCH_S = 0.0002

#: two-sided 95 % Student t quantiles for 1..30 degrees of freedom (scipy.stats.t.ppf(0.975, df))
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.95996 + 2.4 / df  # within 0.1 % of the exact value beyond 30


@dataclass(frozen=True)
class Settings:
    """How the pass runs (the plan's ``layer_energy_*`` keys, through the worker config)."""

    #: target: 95 % interval half-width / energy
    precision: float = 0.05
    #: the pass stops starting rounds that would end after this
    max_seconds: float = 600.0
    #: rounds every layer gets, at least (intervals need 2; 3 give a usable t)
    repetitions: int = ISOLATION_REPETITIONS
    #: counter update periods per block
    periods: int = ISOLATION_PERIODS
    #: time a block runs before its first edge may count, at least; also at least
    #: ``settle_periods`` counter periods, so a counter that publishes late (its value at an edge
    #: being the energy up to some time before it) has seen only the layer in the window
    settle_s: float = ISOLATION_SETTLE_S
    settle_periods: float = ISOLATION_SETTLE_PERIODS
    #: target time of one launch (the copies in one CUDA graph)
    chunk_s: float = 0.002
    graphs: bool = True
    seed: int = 0
    #: how often the poller reads the counter (it reads as fast as it can, pausing this long)
    poll_s: float = 0.0005
    #: a counter that does not change for this long while the pass waits for it is an error
    counter_timeout_s: float = 30.0


@dataclass
class Edge:
    """A change of the counter: it happened in ``[t_lo, t_hi]``; ``value`` is the new reading."""

    t_lo: int
    t_hi: int
    value: int

    @property
    def mid(self) -> float:
        return (self.t_lo + self.t_hi) / 2


class Poller(threading.Thread):
    """Reads the counter continuously and keeps its edges (the list only grows)."""

    def __init__(self, counter: EnergyCounter, poll_s: float) -> None:
        super().__init__(name="jetpower-energy-poller", daemon=True)
        self.counter, self.poll_s = counter, poll_s
        self.edges: list[Edge] = []
        self.reads = 0
        self.read_ns = 0
        self.error: BaseException | None = None
        self._stop_flag = threading.Event()
        self._started = threading.Event()

    def run(self) -> None:
        try:
            prev_start = monotonic_ns()
            prev = self.counter.read_uj()
            self._started.set()
            while not self._stop_flag.is_set():
                s = monotonic_ns()
                v = self.counter.read_uj()
                e = monotonic_ns()
                self.reads += 1
                self.read_ns += e - s
                if v != prev:
                    self.edges.append(Edge(prev_start, e, v))
                prev, prev_start = v, s
                if self.poll_s:
                    time.sleep(self.poll_s)
        except BaseException as e:  # surfaced by the main thread through check()
            self.error = e
            self._started.set()

    def start_and_wait(self) -> None:
        self.start()
        self._started.wait(10)
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise CounterError(f"reading the energy counter failed: {self.error}") from self.error

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(5)


@dataclass
class Block:
    """One measured block of one item (a layer, the whole model or idle)."""

    item: str
    round: int
    i0: int  # index of the first and last edge of the window in ``Poller.edges``
    i1: int
    executions: int
    device_s: float
    t_begin_ns: int
    t_end_ns: int
    conditions_before: dict[str, float]
    conditions_after: dict[str, float]
    # filled in by the analysis
    dt_s: float = 0.0
    de_uj: float = 0.0
    idle_w: float = 0.0
    energy_uj: float | None = None
    gross_uj: float | None = None
    #: a host unit's launch spans (ns) and per-launch executions: executions counted in the window
    spans: list[tuple[int, int]] | None = None
    per_launch: int = 0
    in_window: float = 0.0

    @property
    def t_exec_s(self) -> float:
        return self.device_s / self.executions if self.executions else 0.0


@dataclass
class Item:
    name: str
    unit: Any
    kind: str  # "layer", "whole", "idle"
    blocks: list[Block] = field(default_factory=list)


class Pass:
    """One isolation pass over ``items`` (layers and the whole model), see the module doc."""

    def __init__(
        self,
        counter: EnergyCounter,
        settings: Settings,
        items: list[Item],
        idle: Item,
        progress: Any = None,
    ) -> None:
        self.counter, self.s, self.items, self.idle = counter, settings, items, idle
        self.progress = progress
        self.poller = Poller(counter, settings.poll_s)
        self.period_s: float | None = None
        self.truncated = False
        self.reason: str | None = None
        self.rounds = 0
        self.order: list[str] = []  # every block's item, in the order measured
        self.window_rule = ""
        self.fit: dict[str, float] = {}
        self.t_start = 0
        self.t_end = 0
        self._observe = getattr(counter, "observe", None)
        self._rel_dt = 0.0  # relative standard error of the fitted period
        self._idle_se_w = 0.0  # standard error of the idle level

    # -- measuring ----------------------------------------------------------------------------

    def _wait_edges(self, n: int, timeout_s: float) -> None:
        base = len(self.poller.edges)
        end = time.monotonic() + timeout_s
        while len(self.poller.edges) < base + n:
            self.poller.check()
            if time.monotonic() > end:
                raise CounterError(
                    f"the energy counter ({self.counter.name}) changed "
                    f"{len(self.poller.edges) - base} times in {timeout_s:.0f} s; the pass needs "
                    "a counter that updates at least every few seconds"
                )
            time.sleep(0.001)

    def characterise(self) -> float:
        """The counter's update period: the median interval of a few edges while idle."""
        self._wait_edges(6, self.s.counter_timeout_s)
        e = self.poller.edges[-6:]
        gaps = sorted(b.mid - a.mid for a, b in itertools.pairwise(e))
        self.period_s = gaps[len(gaps) // 2] / 1e9
        return self.period_s

    def block(self, item: Item, rnd: int) -> Block:
        s, unit = self.s, item.unit
        periods = s.periods
        period = self.period_s or 0.1
        timeout_ns = int((s.settle_s + (periods + 3) * period * 3 + s.counter_timeout_s) * 1e9)
        cond0 = self.counter.conditions()
        edges = self.poller.edges
        first = len(edges)
        t_begin = monotonic_ns()
        settle_at = t_begin + int(max(s.settle_s, s.settle_periods * period) * 1e9)
        unit.begin()
        execs = 0
        i0: int | None = None
        while True:
            a = monotonic_ns()
            unit.launch()
            execs += unit.per_launch
            if self._observe is not None and unit.sync and unit.per_launch:
                self._observe(item.name, a, monotonic_ns(), unit.per_launch)
            while i0 is None and first < len(edges):
                if edges[first].t_lo >= settle_at:
                    i0 = first
                first += 1
            if i0 is not None and len(edges) > i0 + periods:
                break
            if monotonic_ns() - t_begin > timeout_ns:
                self.poller.check()
                raise CounterError(
                    f"the energy counter ({self.counter.name}) did not change {periods + 1} "
                    f"times while {item.name} ran for {timeout_ns / 1e9:.1f} s"
                )
        device_s = unit.end()
        t_end = monotonic_ns()
        b = Block(
            item.name,
            rnd,
            i0,
            i0 + periods,
            execs,
            device_s,
            t_begin,
            t_end,
            cond0,
            self.counter.conditions(),
        )
        if unit.sync and unit.per_launch:
            b.spans = list(unit.spans)
        item.blocks.append(b)
        self.order.append(item.name)
        return b

    def _round(self, rnd: int, which: list[Item]) -> None:
        self.block(self.idle, rnd)
        order = list(which)
        random.Random(self.s.seed * 1000003 + rnd).shuffle(order)
        for it in order:
            self.block(it, rnd)
            if self.progress is not None:
                self._done += 1
                self.progress.progress(self._done, max(self._done, self._planned))

    def run(self) -> None:
        s = self.s
        self.t_start = monotonic_ns()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_S)  # the poller gets the GIL soon after an edge
        self.poller.start_and_wait()
        try:
            self.characterise()
            period = self.period_s or ISOLATION_COUNTER_PERIOD_S
            per_block = 1.1 * isolation_block_seconds(
                s.periods, s.settle_s, s.settle_periods, period
            )
            self._planned = len(self.items) * max(1, s.repetitions)
            self._done = 0
            todo = list(self.items)
            rnd = 0
            while todo:
                elapsed = (monotonic_ns() - self.t_start) / 1e9
                cost = (len(todo) + 2) * per_block
                if elapsed + cost > s.max_seconds:
                    if rnd < s.repetitions:
                        self.truncated = True
                        self.reason = (
                            f"the time cap ({s.max_seconds:g} s) allowed {rnd} of the "
                            f"{s.repetitions} rounds"
                        )
                    elif todo:
                        self.reason = (
                            f"the time cap ({s.max_seconds:g} s) stopped further rounds for "
                            f"{len(todo)} item(s) short of the target precision"
                        )
                    break
                t0 = monotonic_ns()
                self._round(rnd, todo)
                per_block = (monotonic_ns() - t0) / 1e9 / (len(todo) + 1)
                rnd += 1
                if rnd >= s.repetitions:
                    self.analyse(final=False)
                    todo = [it for it in self.items if not self._precise(it)]
                    self._planned = self._done + len(todo)
            self.rounds = rnd
            self.block(self.idle, rnd)  # the last idle block brackets the last round
        finally:
            self.poller.stop()
            sys.setswitchinterval(switch)
            self.t_end = monotonic_ns()
        self.poller.check()
        self.analyse(final=True)

    # -- analysis -----------------------------------------------------------------------------

    def _edge_times(self, edges: list[Edge]) -> np.ndarray:
        """Each edge's time, ns: a fitted fixed period where the edges fit one, else midpoints."""
        mids = np.array([e.mid for e in edges], dtype=np.float64)
        half = np.array([(e.t_hi - e.t_lo) / 2 for e in edges], dtype=np.float64)
        if len(edges) < 4:
            self.window_rule = "edge midpoints (too few edges to fit a period)"
            return mids
        p0 = float(np.median(np.diff(mids)))
        idx = np.zeros(len(edges))
        for k in range(1, len(edges)):
            idx[k] = idx[k - 1] + max(1, round((mids[k] - mids[k - 1]) / p0))
        slope, icpt = np.polyfit(idx, mids, 1)
        resid = mids - (slope * idx + icpt)
        rms = float(np.sqrt(np.mean(resid**2)))
        spread = float(np.sqrt(np.sum((idx - idx.mean()) ** 2)))
        rel = rms / spread / slope if spread > 0 else 0.0
        self.fit = {
            "period_s": slope / 1e9,
            "period_rel_se": rel,
            "residual_rms_ns": rms,
            "edge_half_width_median_ns": float(np.median(half)),
            "edges": len(edges),
        }
        if rms < slope / 10:
            self.window_rule = (
                "fixed update period fitted to all edges of the pass "
                "(window = periods x fitted period)"
            )
            self._rel_dt = rel
            return slope * idx + icpt
        self._rel_dt = 0.0  # each window's own edge jitter is in the spread of the repetitions
        self.window_rule = (
            "edge bracket midpoints (the edges do not fit a fixed period: "
            f"residual {rms / 1e6:.2f} ms)"
        )
        return mids

    def analyse(self, *, final: bool) -> None:
        edges = self.poller.edges[:]  # a snapshot: the poller may still be appending
        times = self._edge_times(edges)
        for b in self._all_blocks():
            b.dt_s = float(times[b.i1] - times[b.i0]) / 1e9
            b.de_uj = float(edges[b.i1].value - edges[b.i0].value)
        idle = sorted(self.idle.blocks, key=lambda b: b.t_begin_ns)
        it = np.array([(times[b.i0] + times[b.i1]) / 2 for b in idle])
        iw = np.array([b.de_uj / b.dt_s / 1e6 for b in idle])
        for b in idle:
            b.idle_w = b.de_uj / b.dt_s / 1e6
        # the idle level's uncertainty is common to every block: its spread over the idle blocks,
        # at least the counter's step over one idle window
        floor = self.counter.resolution_uj / 1e6 / (min(b.dt_s for b in idle) * math.sqrt(12))
        spread = float(np.std(iw, ddof=1) / math.sqrt(iw.size)) if iw.size > 1 else 0.0
        self._idle_se_w = max(spread, floor)
        for item in self.items:
            for b in item.blocks:
                t0, t1 = times[b.i0], times[b.i1]
                b.idle_w = float(np.interp((t0 + t1) / 2, it, iw))
                if b.spans is not None:  # host unit: count what ran inside the window
                    b.in_window = _overlap(b.spans, item.unit.per_launch, t0, t1)
                else:  # device unit: back to back at the block's rate
                    b.in_window = b.dt_s / b.t_exec_s if b.t_exec_s else 0.0
                if b.in_window <= 0:
                    continue
                b.energy_uj = (b.de_uj - b.idle_w * 1e6 * b.dt_s) / b.in_window
                b.gross_uj = b.de_uj / b.in_window

    def _all_blocks(self) -> list[Block]:
        return [b for it in (*self.items, self.idle) for b in it.blocks]

    def _systematic_uj(self, item: Item) -> float:
        """1-sigma error common to all of an item's repetitions: the idle level and the period."""
        used = [b for b in item.blocks if b.energy_uj is not None and b.in_window > 0]
        if not used:
            return 0.0
        per = float(np.mean([b.dt_s / b.in_window for b in used]))  # s of window per execution
        gross = float(np.mean([b.gross_uj for b in used]))
        return math.hypot(self._idle_se_w * per * 1e6, gross * self._rel_dt)

    def _stats(self, item: Item) -> tuple[float, float | None, list[float] | None]:
        """Mean over the repetitions and its 95 % interval: Student t over the repetitions,
        combined in quadrature with the systematic part (normal, 95 %)."""
        v = np.array([b.energy_uj for b in item.blocks if b.energy_uj is not None])
        mean = float(v.mean())
        if v.size < 2:
            return mean, None, None
        rep = t975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
        hw = math.hypot(rep, 1.96 * self._systematic_uj(item))
        return mean, hw, [mean - hw, mean + hw]

    def _precise(self, item: Item) -> bool:
        mean, hw, _ = self._stats(item)
        if hw is None:
            return False
        layers = [it for it in self.items if it.kind == "layer"]
        typical = np.mean([abs(self._stats(it)[0]) for it in layers]) if layers else abs(mean)
        return hw <= self.s.precision * max(abs(mean), float(typical))

    # -- the result ---------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The ``jetpower.layer-energy`` document (without the model's identity, see run_pass)."""
        layers: list[dict[str, Any]] = []
        for item in self.items:
            mean, _, ci = self._stats(item)
            blocks = item.blocks
            keys = sorted({k for b in blocks for k in (*b.conditions_before, *b.conditions_after)})
            cond = {}
            for k in keys:
                vals = [
                    c[k]
                    for b in blocks
                    for c in (b.conditions_before, b.conditions_after)
                    if k in c
                ]
                cond[k] = [min(vals), max(vals)]
            unit = item.unit
            row = {
                "layer": item.name,
                "kind": item.kind,
                "energy_uj": mean,
                "energy_ci_uj": ci,
                "systematic_uj": self._systematic_uj(item),
                "energy_gross_uj": float(
                    np.mean([b.gross_uj for b in blocks if b.gross_uj is not None])
                ),
                "exec_time_us": float(np.mean([b.t_exec_s for b in blocks])) * 1e6,
                "replays": float(sum(b.in_window for b in blocks)),
                "repetitions": len(blocks),
                "graph_used": bool(unit.graph_used),
                "per_launch": int(unit.per_launch),
                "duration_s": float(sum(b.dt_s for b in blocks)),
                "idle_w": float(np.mean([b.idle_w for b in blocks])),
                "conditions": cond,
            }
            if getattr(unit, "graph_error", None):
                row["graph_error"] = unit.graph_error
            layers.append(row)
        rows = [r for r in layers if r["kind"] == "layer"]
        whole = next((r for r in layers if r["kind"] == "whole"), None)
        total = float(sum(r["energy_uj"] for r in rows))
        var = [
            ((r["energy_ci_uj"][1] - r["energy_uj"]) / 1.96) ** 2
            for r in rows
            if r["energy_ci_uj"] is not None
        ]
        sum_hw = 1.96 * math.sqrt(sum(var)) if len(var) == len(rows) else None
        check: dict[str, Any] = {
            "sum_layers_uj": total,
            "sum_layers_ci_uj": None if sum_hw is None else [total - sum_hw, total + sum_hw],
        }
        if whole is not None:
            check |= {
                "whole_uj": whole["energy_uj"],
                "whole_ci_uj": whole["energy_ci_uj"],
                "ratio": total / whole["energy_uj"] if whole["energy_uj"] else None,
                "whole_method": "infer() as in the timing pass (forward, then synchronise), "
                "replayed in blocks like the layers",
            }
        idle = self.idle.blocks
        return {
            "method": "isolated",
            "counter": {
                **self.counter.describe(),
                "update_period_s": self.period_s,
                "reads": self.poller.reads,
                "read_cost_us": self.poller.read_ns / max(1, self.poller.reads) / 1e3,
            },
            "simulated": bool(self.counter.simulated),
            "settings": {k: getattr(self.s, k) for k in self.s.__dataclass_fields__},
            "window_rule": self.window_rule,
            "period_fit": self.fit,
            "energy_rule": "per execution = (dE - P_idle x dt) / n, dE and dt between two counter "
            "edges while the layer ran back to back, n the executions in that "
            "window (counted on the host for synchronous replays, dt / t_exec "
            "from CUDA events for graph or stream replays); P_idle "
            "interpolated between idle blocks; interval: Student t, 95 %, over "
            "the repetitions, combined in quadrature with the error common to "
            "them (idle level, fitted period: systematic_uj, 1 sigma)",
            "pass": {
                "duration_s": (self.t_end - self.t_start) / 1e9,
                "start_ns": self.t_start,
                "end_ns": self.t_end,
                "rounds": self.rounds,
                "blocks": len(self.order),
                "truncated": self.truncated,
                "reason": self.reason,
            },
            "idle": [
                {
                    "t_ns": b.t_begin_ns,
                    "idle_w": b.idle_w,
                    "dt_s": b.dt_s,
                    "conditions": b.conditions_before,
                }
                for b in idle
            ],
            "layers": rows,
            "whole": whole,
            "check": check,
            "blocks": [
                {
                    "item": b.item,
                    "round": b.round,
                    "dt_s": b.dt_s,
                    "de_uj": b.de_uj,
                    "idle_w": b.idle_w,
                    "executions": b.executions,
                    "device_s": b.device_s,
                    "energy_uj": b.energy_uj,
                    "t_begin_ns": b.t_begin_ns,
                    "t_end_ns": b.t_end_ns,
                    "conditions_before": b.conditions_before,
                    "conditions_after": b.conditions_after,
                }
                for b in sorted(self._all_blocks(), key=lambda b: b.t_begin_ns)
            ],
        }


def _overlap(spans: list[tuple[int, int]], per_launch: int, t0: float, t1: float) -> float:
    """Executions inside ``[t0, t1]``: each launch's ``per_launch`` counted pro rata of overlap."""
    n = 0.0
    for a, b in spans:
        lo, hi = max(a, t0), min(b, t1)
        if hi > lo:
            n += per_launch * (hi - lo) / (b - a)
    return n


def make_items(backend: Any, settings: Settings, counter: EnergyCounter) -> tuple[list[Item], Item]:
    """The backend's leaf layers (inputs captured from one inference), the whole model, idle."""
    be = backend
    torch = be.torch
    layers = _replay.capture_layers(
        torch,
        be.model,
        be.x,
        be._leaves,
        be._stream_ctx,
        lambda: be.stream.synchronize() if be.cuda else None,
    )
    items: list[Item] = []
    for layer in layers:
        if be.cuda:
            unit: Any = _replay.CudaUnit(torch, be.stream, layer, settings.chunk_s, settings.graphs)
        else:
            unit = _replay.HostUnit(
                layer.name, layer, _host_copies(layer, settings.chunk_s), "layer"
            )
        items.append(Item(layer.name, unit, "layer"))
    items.append(Item(WHOLE, _replay.HostUnit(WHOLE, be.infer, 1, "whole"), "whole"))
    idle = Item(IDLE, _replay.HostUnit(IDLE, None, 0, "idle", settings.chunk_s), "idle")
    return items, idle


def _host_copies(layer: _replay.Layer, chunk_s: float) -> int:
    t0 = monotonic_ns()
    n = 0
    while n < 3 or monotonic_ns() - t0 < 2e6:
        layer()
        n += 1
    one = (monotonic_ns() - t0) / 1e9 / n
    return int(min(_replay.MAX_PER_LAUNCH, max(1, round(chunk_s / max(one, 1e-7)))))


def run_pass(
    backend: Any, counter: EnergyCounter, settings: Settings, progress: Any = None
) -> dict[str, Any]:
    """Capture, replay and measure every leaf layer of ``backend``'s loaded model."""
    items, idle = make_items(backend, settings, counter)
    if progress is not None:
        progress.emit(
            "layer_energy_planned",
            layers=len(items) - 1,
            repetitions=settings.repetitions,
            estimated_s=estimate_seconds(len(items) - 1, settings, None),
        )
    p = Pass(counter, settings, items, idle, progress)
    p.run()
    doc = p.document()
    return {"format": FORMAT, "version": VERSION, **doc}


def estimate_seconds(layers: int, settings: Settings, period_s: float | None) -> float:
    """A guess of the pass's duration, the same as ``validate``'s (``_plan_estimate``)."""
    return isolation_seconds(
        layers,
        repetitions=settings.repetitions,
        periods=settings.periods,
        settle_s=settings.settle_s,
        period_s=period_s or ISOLATION_COUNTER_PERIOD_S,
        settle_periods=settings.settle_periods,
        max_seconds=settings.max_seconds,
    )
