"""What the isolation pass replays: one leaf layer on its captured inputs, the whole model, or
nothing (idle), each as a *unit* that is launched over and over for one measured block.

A unit's ``launch`` runs (or, on CUDA, enqueues) ``per_launch`` executions; ``begin``/``end``
bracket a block and return the time the executions took, so that ``end() / executions`` is the
time of one execution as the device ran it back to back.  A synchronous (host) unit also keeps
each launch's span, so the executions inside a counter window are counted, not inferred.  On
CUDA a layer is captured once into a CUDA graph of ``per_launch`` copies (launch overhead then
does not dominate a 3 us kernel); where capture fails the copies are launched eagerly and
``graph_used`` is False.  At most ``DEPTH`` launches are in flight, so a block ends soon after
the host stops launching.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jetpower.timebase import monotonic_ns

#: launches in flight on the stream during a block
DEPTH = 4
#: at most this many executions in one launch (nodes of one CUDA graph)
MAX_PER_LAUNCH = 1000


@dataclass
class Layer:
    """One leaf call of the model, with the inputs it really got (cloned)."""

    name: str
    module: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return self.module(*self.args, **self.kwargs)


def capture_layers(
    torch: Any,
    model: Any,
    x: Any,
    leaves: list[tuple[str, Any]],
    stream_ctx: Callable[[], Any],
    sync: Callable[[], None],
) -> list[Layer]:
    """Run one inference with forward pre-hooks that clone every leaf call's inputs.

    Names follow the profiling pass: ``<module>``, then ``<module>#2``... for later calls.
    """
    calls: dict[str, int] = {}
    layers: list[Layer] = []

    def clone(v: Any) -> Any:
        return v.detach().clone() if isinstance(v, torch.Tensor) else v

    def hook_for(qual: str, mod: Any) -> Callable[[Any, Any, Any], None]:
        def pre(m: Any, args: Any, kwargs: Any) -> None:
            calls[qual] = calls.get(qual, 0) + 1
            name = qual if calls[qual] == 1 else f"{qual}#{calls[qual]}"
            layers.append(
                Layer(
                    name,
                    mod,
                    tuple(clone(a) for a in args),
                    {k: clone(v) for k, v in kwargs.items()},
                )
            )

        return pre

    handles = [m.register_forward_pre_hook(hook_for(q, m), with_kwargs=True) for q, m in leaves]
    try:
        with stream_ctx():
            model(x)
        sync()
    finally:
        for h in handles:
            h.remove()
    return layers


class HostUnit:
    """Synchronous executions timed on CLOCK_MONOTONIC (CPU layers, the whole model, idle)."""

    sync = True

    def __init__(
        self,
        name: str,
        fn: Callable[[], Any] | None,
        per_launch: int,
        kind: str,
        idle_s: float = 0.002,
    ) -> None:
        self.name, self.fn, self.per_launch, self.kind = name, fn, per_launch, kind
        self.graph_used = False
        self.idle_s = idle_s
        self._t0 = 0
        self.spans: list[tuple[int, int]] = []

    def begin(self) -> None:
        self._t0 = monotonic_ns()
        self.spans = []

    def launch(self) -> None:
        if self.fn is None:
            time.sleep(self.idle_s)
            return
        a = monotonic_ns()
        for _ in range(self.per_launch):
            self.fn()
        self.spans.append((a, monotonic_ns()))

    def end(self) -> float:
        return (monotonic_ns() - self._t0) / 1e9


class CudaUnit:
    """Executions enqueued on the backend's stream, a CUDA graph where capture works."""

    sync = False

    def __init__(self, torch: Any, stream: Any, layer: Layer, chunk_s: float, graphs: bool) -> None:
        self.torch, self.stream, self.name, self.kind = torch, stream, layer.name, "layer"
        self.layer = layer
        self.exec_s = self._time_eager(layer)
        want = chunk_s / max(self.exec_s, 1e-7)
        self.per_launch = int(min(MAX_PER_LAUNCH, max(1, round(want))))
        self.graph: Any = None
        self.graph_error: str | None = None
        if graphs:
            try:
                self.graph = self._capture(layer, self.per_launch)
            except Exception as e:  # any capture failure: eager replay, recorded with the reason
                self.graph_error = f"{type(e).__name__}: {e}"
                self.graph = None
                torch.cuda.synchronize()
        self.graph_used = self.graph is not None
        self._inflight: collections.deque[Any] = collections.deque()
        self._ev0: Any = None

    def _time_eager(self, layer: Layer) -> float:
        ev = self.torch.cuda.Event
        with self.torch.cuda.stream(self.stream):
            for _ in range(3):
                layer()
            a, b = ev(enable_timing=True), ev(enable_timing=True)
            a.record(self.stream)
            for _ in range(10):
                layer()
            b.record(self.stream)
        b.synchronize()
        return float(a.elapsed_time(b)) / 1e3 / 10

    def _capture(self, layer: Layer, copies: int) -> Any:
        torch = self.torch
        self.stream.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=self.stream):
            for _ in range(copies):
                layer()
        self.stream.synchronize()
        return g

    def begin(self) -> None:
        self._ev0 = self.torch.cuda.Event(enable_timing=True)
        self._ev0.record(self.stream)

    def launch(self) -> None:
        torch = self.torch
        while len(self._inflight) >= DEPTH:
            self._inflight.popleft().synchronize()
        with torch.cuda.stream(self.stream):
            if self.graph is not None:
                self.graph.replay()
            else:
                for _ in range(self.per_launch):
                    self.layer()
        ev = torch.cuda.Event()
        ev.record(self.stream)
        self._inflight.append(ev)

    def end(self) -> float:
        ev1 = self.torch.cuda.Event(enable_timing=True)
        ev1.record(self.stream)
        ev1.synchronize()
        self._inflight.clear()
        return float(self._ev0.elapsed_time(ev1)) / 1e3
