"""The simulated board's true power: what the worker runs, as the truth bus reports it.

Net power (above the rails' idle levels) is piecewise constant:

- while a published layer runs: that layer's net power (:class:`PowerTable`);
- for :data:`GAP_HOLD_NS` after a layer ends, until the next begins: :data:`GAP_NET_MW`, the
  framework's work between layers and between profiled runs;
- otherwise (no profiling pass: idle, compile, warm-up, the timing pass): the background level,
  which follows this machine's CPU load as the simulator always did (:class:`CpuLoad`).

The rule is causal, so the simulator can apply it at each conversion end without knowing the
future; the truth file states it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jetpower.errors import SensorError
from jetpower.sensors.truthbus import BEGIN, Mark

GAP_NET_MW = 150.0
GAP_HOLD_NS = 20_000_000
BACKGROUND_FULL_MW = 4200.0  # net power at 100 % CPU load, outside a profiling pass
NET_MIN_MW = 300.0
NET_SPAN_MW = 2700.0
HASH_RULE = (f"net mW = {NET_MIN_MW:g} + {NET_SPAN_MW:g} x u, u = the first 4 bytes of "
             "SHA-256(UTF-8 layer name) as a big-endian unsigned integer / 2^32")

Segment = tuple[int, int, float | None]  # [t0, t1) ns, net mW (None: the background level)


def hashed_net_mw(name: str) -> float:
    """A layer's deterministic net power from its name (:data:`HASH_RULE`)."""
    u = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") / 2**32
    return NET_MIN_MW + NET_SPAN_MW * u


class PowerTable:
    """Net power per layer name: a given table where it names the layer, the hash rule else."""

    def __init__(self, table: Mapping[str, float] | None = None, *,
                 gap_mw: float = GAP_NET_MW, source: str = "hash") -> None:
        self.table = dict(table or {})
        self.gap_mw = gap_mw
        self.source = source
        self._cache: dict[str, float] = {}

    @classmethod
    def load(cls, path: Path) -> PowerTable:
        """A JSON file ``{"layers": {name: net mW, ...}, "gap_mw": mW}`` (both keys optional)."""
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SensorError(f"cannot read the power table {path}: {e}") from e
        layers = d.get("layers", {}) if isinstance(d, dict) else None
        gap = d.get("gap_mw", GAP_NET_MW) if isinstance(d, dict) else None
        if not isinstance(layers, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for v in layers.values()):
            raise SensorError(f"power table {path}: 'layers' must map layer names to "
                              "non-negative mW")
        if not isinstance(gap, int | float) or isinstance(gap, bool) or gap < 0:
            raise SensorError(f"power table {path}: 'gap_mw' is {gap!r}, expected mW >= 0")
        return cls({str(k): float(v) for k, v in layers.items()}, gap_mw=float(gap),
                   source=str(path))

    def net_mw(self, name: str) -> float:
        v = self._cache.get(name)
        if v is None:
            v = self._cache[name] = self.table.get(name, hashed_net_mw(name))
        return v

    def describe(self) -> dict[str, Any]:
        return {"rule": HASH_RULE, "table": self.source, "table_layers": len(self.table),
                "gap_net_mw": self.gap_mw, "gap_hold_ns": GAP_HOLD_NS,
                "background_full_load_mw": BACKGROUND_FULL_MW}


class Timeline:
    """Net power over time, built from the truth bus's marks (see the module docstring)."""

    def __init__(self, table: PowerTable) -> None:
        self.table = table
        self.segments: deque[Segment] = deque()
        self._state = "none"  # "none", "layer" or "after"
        self._since = 0  # when the open state began
        self._net = 0.0  # the open layer's net power
        self._name = ""
        self._layer = -1
        #: per layer name: [executions, total ns]
        self.layers: dict[str, list[int]] = {}
        self.unknown_marks = 0
        self.unmatched_ends = 0
        self.gap_ns = 0
        #: marks that arrived after a conversion had already averaged past their time (the
        #: publisher was delayed between stamping and publishing): those windows missed them
        self.late_marks = 0
        self.late_ns = 0
        self.integrated_to = 0

    def _close(self, t: int) -> None:
        """Close the open state at ``t``, appending its segments."""
        s = self._since
        if t <= s:
            return
        if self._state == "layer":
            self.segments.append((s, t, self._net))
            st = self.layers.setdefault(self._name, [0, 0])
            st[0] += 1
            st[1] += t - s
        elif self._state == "after":
            g = min(t, s + GAP_HOLD_NS)
            self.segments.append((s, g, self.table.gap_mw))
            self.gap_ns += g - s
            if t > g:
                self.segments.append((g, t, None))
        else:
            self.segments.append((s, t, None))

    def feed(self, marks: Iterable[Mark], name_of: Callable[[int, int], str | None]) -> None:
        for m in marks:
            if m.t_ns < self.integrated_to:
                self.late_marks += 1
                self.late_ns += self.integrated_to - m.t_ns
            t = max(m.t_ns, self._since)
            name = name_of(m.table, m.layer)
            if name is None:
                self.unknown_marks += 1
            if m.kind == BEGIN:
                self._close(t)
                self._state, self._since, self._layer = "layer", t, m.layer
                self._name = name if name is not None else f"<table {m.table} layer {m.layer}>"
                self._net = self.table.gap_mw if name is None else self.table.net_mw(name)
            else:
                if self._state != "layer" or m.layer != self._layer:
                    self.unmatched_ends += 1
                    if self._state == "layer":
                        self._close(t)
                else:
                    self._close(t)
                self._state, self._since = "after", t

    def _open(self, t_end: int) -> Iterable[Segment]:
        s = self._since
        if self._state == "layer":
            yield (s, t_end, self._net)
        elif self._state == "after":
            g = s + GAP_HOLD_NS
            yield (s, min(g, t_end), self.table.gap_mw)
            if t_end > g:
                yield (g, t_end, None)
        else:
            yield (s, t_end, None)

    def mean_net(self, a: int, b: int, background: Callable[[int], float]) -> float:
        """Mean net power over ``[a, b)`` ns."""
        if b <= a:
            return 0.0
        self.integrated_to = max(self.integrated_to, b)
        total = 0.0
        covered = a
        for seg in itertools.chain(self.segments, self._open(b)):
            t0, t1, net = seg
            if t0 >= b:
                break  # segments are in time order
            if t1 <= a:
                continue
            lo = t0 if t0 > a else a
            hi = t1 if t1 < b else b
            total += (background((lo + hi) // 2) if net is None else net) * (hi - lo)
            covered = hi
        if covered < b:  # before the first state began: background
            total += background((covered + b) // 2) * (b - covered)
        return total / (b - a)

    def prune(self, before: int) -> None:
        """Forget segments that end before ``before`` (no later window reaches them)."""
        segs = self.segments
        while segs and segs[0][1] <= before:
            segs.popleft()

    def layer_truth(self) -> dict[str, dict[str, float | int]]:
        return {
            name: {"net_mw": self.table.net_mw(name) if not name.startswith("<") else
                   self.table.gap_mw,
                   "executions": n, "mean_duration_ns": (tot / n) if n else math.nan}
            for name, (n, tot) in self.layers.items()
        }


class CpuLoad:
    """Busy fraction of all CPUs since the previous call, from ``/proc/stat``."""

    def __init__(self) -> None:
        self.prev = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                parts = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return (0, 0)
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle

    def __call__(self) -> float:
        cur = self._read()
        total, idle = cur[0] - self.prev[0], cur[1] - self.prev[1]
        self.prev = cur
        return 0.0 if total <= 0 else max(0.0, min(1.0, 1.0 - idle / total))


class Background:
    """The background net power: CPU load smoothed over 50 ms steps, and its per-second trace."""

    def __init__(self, *, follow_cpu: bool = True) -> None:
        self.load = CpuLoad() if follow_cpu else None
        self.level = 0.0
        self._busy = 0.0
        self._next = 0
        self.trace: list[list[float]] = []  # [second start ns, mean net mW]
        self._sec = -1
        self._acc = 0.0
        self._n = 0

    def tick(self, now: int) -> None:
        if now < self._next:
            return
        self._next = now + 50_000_000
        if self.load is not None:
            self._busy = 0.7 * self._busy + 0.3 * self.load()
            self.level = BACKGROUND_FULL_MW * self._busy
        sec = now // 1_000_000_000
        if sec != self._sec:
            if self._n:
                self.trace.append([self._sec * 1_000_000_000, self._acc / self._n])
            self._sec, self._acc, self._n = sec, 0.0, 0
        self._acc += self.level
        self._n += 1

    def __call__(self, t: int) -> float:
        return self.level
