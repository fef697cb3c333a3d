"""Layer windows placed on CLOCK_MONOTONIC, measured instead of reconstructed.

The reconstruction of docs/DESIGN.md ("Time") puts layer k of a run at ``run start + the
latencies of the layers before it``.  Everything between layers (Python between leaf modules, the
host launching the next kernel, an idle GPU waiting for it) is in no window, so the windows drift
early along the run: on the CPU backend by 82 us on average (158 us at most) for lenet.  Two
measured placements replace it:

CPU (hooks).  A forward pre-hook stamps ``time.monotonic_ns()`` as its last statement, a forward
hook as its first, so each leaf module's window is its own ``[start, end]``.  What remains is the
hook dispatch: the time from the pre-hook's stamp to the module's ``forward`` body and from its
return to the post-hook's stamp.  :func:`calibrate_cpu_hooks` measures both on this machine with a
probe module whose ``forward`` stamps itself; the windows are corrected by the two medians (a
window starts that much after its pre-hook stamp and ends that much before its post-hook stamp),
and what is left, the spread of the dispatch around its median, is the stated error.

CUDA (an anchored event).  CUDA events time the device, not the host, and their elapsed times are
differences.  Each profiled inference therefore starts from an anchor: the stream is idle (the
previous run was synchronised), the host takes ``h0 = monotonic_ns()``, records event ``E0`` on
the stream and spins on ``E0.query()`` until the device has passed it, then takes ``h1``.  The
device wrote E0's timestamp after ``h0`` (the host had not asked for it before) and before ``h1``
(the query saw it done), so ``t(E0) = (h0 + h1) / 2`` with an error of at most ``(h1 - h0) / 2``,
known per run.  Each layer's window is then ``t(E0) + elapsed(E0, pre_k)`` to ``t(E0) +
elapsed(E0, post_k)``, its events recorded by the hooks on the same stream.  Elapsed times have a
resolution of about 0.5 us, and the device clock's rate differs from CLOCK_MONOTONIC's by parts
per million, which is nanoseconds over one inference; the bound is the anchor's half-width.
``benchmarks/gpu/alignment.py`` measures, over thousands of inferences, both this bound and how far
the old reconstruction sits from these windows, and checks causality (no event placed before the
host recorded it, none after the host saw the stream finish).

TensorRT on a Jetson (the same method, for ``trt_backend.py``).  TensorRT's profiler gives layer
latencies only, measured on the device between its own events, and an engine runs its layers
back to back inside one enqueue.  Anchor each inference exactly as above on the engine's stream
(synchronise, ``h0``, record ``E0``, spin on ``query``, ``h1``; a Jetson's integrated GPU shares
CLOCK_MONOTONIC's host, and ``cudaEventQuery`` works the same way), record ``B_e`` right before and
``A_e`` right after each engine's ``execute_async_v3`` (torch-tensorrt's runtime module: wrap every
engine's forward, PyTorch fallback ops between engines stay outside), then place engine e's first
layer at ``t(E0) + elapsed(E0, B_e)`` and its layers by the cumulative profiler latencies from
there.  The engine's span ``elapsed(B_e, A_e)`` minus the sum of its layer latencies is what
TensorRT leaves between its layers (reformatting, launch gaps): it bounds the drift inside one
engine and is stated with the anchor's half-width.  The stand-in in ``tests/fakes`` gives kernels
launch latency and gaps, so the placement can be tested against a truth that does not tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from jetpower.timebase import monotonic_ns

CPU_METHOD = (
    "measured (CPU hooks): each leaf module's window is stamped with CLOCK_MONOTONIC by its own "
    "forward pre-hook (last statement) and forward hook (first statement); timestamp = end of the "
    "layer's window. The hook dispatch between a stamp and the module's forward body is measured "
    "on this machine by a probe module that stamps itself (cpu_hook_calibration); windows are "
    "corrected by its medians, and the error stated is the spread around them (residual)"
)
CUDA_METHOD = (
    "measured (CUDA, anchored events): per run the stream is idle, the host takes h0 = "
    "CLOCK_MONOTONIC, records event E0 and spins on its query until done (h1); t(E0) = (h0+h1)/2, "
    "within (h1-h0)/2. Layer windows = t(E0) + elapsed(E0, event before / after the leaf module), "
    "events recorded by forward pre/post hooks on the same stream; timestamp = end of the layer's "
    "window. Error: the anchor's half-width per run (anchor_half_width_ns), plus CUDA event "
    "resolution (~0.5 us)"
)


def _quantiles(values: Any) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "median_ns": float("nan"), "p99_ns": float("nan"), "max_ns": float("nan")}
    return {
        "n": int(a.size),
        "median_ns": float(np.median(a)),
        "p99_ns": float(np.percentile(a, 99)),
        "max_ns": float(a.max()),
    }


def summary(values: Any) -> dict[str, float]:
    """n, median, p99 and max of a set of errors in ns (the form the manifest states them in)."""
    return _quantiles(np.abs(np.asarray(values, dtype=np.float64)))


# -- CPU ----------------------------------------------------------------------------------------


def calibrate_cpu_hooks(torch: Any, calls: int = 400) -> dict[str, Any]:
    """Measure the hook dispatch: pre-hook stamp -> forward entry, forward exit -> post-hook stamp.

    The probe module has the same two hooks the torch backend installs (a stamp as the pre-hook's
    last and the post-hook's first statement) and stamps its own ``forward`` on entry and exit.
    """
    stamps: dict[str, int] = {}

    class Probe(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            stamps["enter"] = monotonic_ns()
            stamps["exit"] = monotonic_ns()
            return x

    def pre(mod: Any, args: Any) -> None:
        stamps["pre"] = monotonic_ns()

    def post(mod: Any, args: Any, out: Any) -> None:
        stamps["post"] = monotonic_ns()

    probe = Probe()
    probe.register_forward_pre_hook(pre)
    probe.register_forward_hook(post)
    x = torch.zeros(1)
    before, after = np.empty(calls), np.empty(calls)
    for i in range(calls):
        probe(x)
        before[i] = stamps["enter"] - stamps["pre"]
        after[i] = stamps["post"] - stamps["exit"]
    before, after = before[calls // 10 :], after[calls // 10 :]  # the first calls: warm-up
    start_corr, end_corr = float(np.median(before)), float(np.median(after))
    residual = np.concatenate([before - start_corr, after - end_corr])
    return {
        "calls": calls,
        "start_offset": summary(before),
        "end_offset": summary(after),
        "start_correction_ns": start_corr,
        "end_correction_ns": end_corr,
        "residual": summary(residual),
    }


# -- CUDA ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """One device event placed on CLOCK_MONOTONIC: ``t = mid_ns`` within ``half_width_ns``."""

    event: Any
    h0_ns: int
    h1_ns: int

    @property
    def mid_ns(self) -> float:
        return (self.h0_ns + self.h1_ns) / 2

    @property
    def half_width_ns(self) -> float:
        return (self.h1_ns - self.h0_ns) / 2

    def place(self, event: Any) -> float:
        """CLOCK_MONOTONIC ns of a later event on the same stream (after it has completed)."""
        return self.mid_ns + float(self.event.elapsed_time(event)) * 1e6


def anchor_event(torch: Any, stream: Any, clock: Callable[[], int] = monotonic_ns) -> Anchor:
    """Synchronise ``stream``, then record an event and bracket the moment the device passed it."""
    stream.synchronize()
    ev = torch.cuda.Event(enable_timing=True)
    h0 = clock()
    ev.record(stream)
    while not ev.query():
        pass
    h1 = clock()
    return Anchor(ev, h0, h1)
