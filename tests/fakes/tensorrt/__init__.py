"""Stand-in for the ``tensorrt`` Python package (the API subset torch-tensorrt and jetpower use).

Faithful where jetpower's correctness depends on it (facts from NVIDIA/TensorRT
python/src/infer/pyCore.cpp, tags v8.6.1 to v11.1, all alike here):

- ``IExecutionContext.profiler`` (property), ``enqueue_emits_profile`` (default True: enqueue then
  reports synchronously), ``report_to_profiler()`` -> bool (False without a profiler).
- An exception raised in ``IProfiler.report_layer_time`` never reaches the caller: the binding
  prints ``[ERROR] Exception caught in report_layer_time(): <what>`` on stderr and goes on with
  the next layer (class PyProfiler).  ``Profiler`` (the default profiler) prints to stdout.
- ``LayerInformationFormat.JSON`` engine info: layer dicts when the engine was built with
  ``ProfilingVerbosity.DETAILED``, layer names only with ``LAYER_NAMES_ONLY``.
- TensorRT 8.x has ``execute_async_v2`` and ``ProfilingVerbosity.VERBOSE``; 10.x has neither
  (``$JETPOWER_FAKE_TRT_VERSION`` picks the release, default 10.1.0).

The device is a simulated timeline on CLOCK_MONOTONIC (no GPU here).  Host costs are spent for
real (spinning); the GPU's are placed on the timeline: each layer is bracketed by boundary events
(TensorRT's per-layer timing), every kernel or event starts no earlier than its submission plus a
launch latency and no earlier than the previous work on the stream plus a gap.  A layer's reported
time is the span between its events, its *true* window the span of its kernel, kept per execution
in ``IExecutionContext.stand_in_truth`` as ``(name, start_ns, end_ns)``.  ``stand_in_synchronize()``
waits (spins) until the stream is idle.  Distributions are assumptions of the order seen with
CUDA, not measurements: see :class:`Timing`.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import sys
import time
from typing import Any

JETPOWER_STAND_IN = True
__version__ = os.environ.get("JETPOWER_FAKE_TRT_VERSION", "10.1.0") + "+standin"
_MAJOR = int(__version__.split(".")[0])

#: every execution context created, for tests to inspect
CONTEXTS: list[IExecutionContext] = []


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2
    if _MAJOR < 10:
        DEFAULT = 0
        VERBOSE = 2


class Logger:
    WARNING = 2

    def __init__(self, min_severity: int = 2) -> None:
        self.min_severity = min_severity


class IProfiler:
    """Subclass and override ``report_layer_time`` (as with the real bindings)."""

    def __init__(self) -> None:
        pass

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        raise RuntimeError('Tried to call pure virtual function "IProfiler::report_layer_time"')


class Profiler(IProfiler):
    """TensorRT's default profiler: one line per layer on stdout."""

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        print(f"{layer_name}: {ms}ms", flush=True)


def _us(median: float, sigma: float, rng: random.Random) -> int:
    """A log-normal draw in ns, ``median`` in microseconds."""
    return int(1000 * median * math.exp(sigma * rng.gauss(0.0, 1.0)))


class Timing:
    """Host and device costs of one inference (microseconds; log-normal, assumed).

    launch: submission to start on an idle stream, ~6 us; gap: between back-to-back work on a
    busy stream, ~1.5 us, and 0.5 % of gaps 10-50 us longer (scheduling hiccups); event and
    kernel: the host's cost of recording a timing event / enqueueing a layer, ~1.5 / ~4 us;
    setup: torch-tensorrt's Python runtime before the enqueue (shapes, addresses, outputs), ~35 us.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def launch(self) -> int:
        return _us(6.0, 0.35, self.rng)

    def gap(self) -> int:
        g = _us(1.5, 0.5, self.rng)
        if self.rng.random() < 0.005:
            g += int(1000 * self.rng.uniform(10.0, 50.0))
        return g

    def event(self) -> int:
        return _us(1.5, 0.3, self.rng)

    def kernel(self) -> int:
        return _us(4.0, 0.4, self.rng)

    def setup(self) -> int:
        return _us(35.0, 0.3, self.rng)


def _spin(ns: int) -> int:
    deadline = time.monotonic_ns() + ns
    while (now := time.monotonic_ns()) < deadline:
        pass
    return now


class _Stream:
    """The simulated device's one stream: when it is next free."""

    def __init__(self) -> None:
        self.free_at = 0
        self.timing = Timing(12345)

    def place(self, submitted: int, duration: int) -> tuple[int, int]:
        """Work submitted at ``submitted`` lasting ``duration``: its (start, end) on the stream."""
        t = self.timing
        start = max(submitted + t.launch(), self.free_at + t.gap())
        self.free_at = start + duration
        return start, self.free_at


STREAM = _Stream()


def stand_in_synchronize() -> None:
    """Wait until the simulated stream is idle (what ``cudaStreamSynchronize`` does)."""
    _spin(STREAM.free_at - time.monotonic_ns())


def stand_in_host_cost() -> None:
    """Spend the host time of torch-tensorrt's Python runtime before an enqueue."""
    _spin(STREAM.timing.setup())


def stand_in_kernel(duration_ns: int) -> None:
    """A non-TensorRT kernel (a PyTorch fallback op) on the stream."""
    STREAM.place(_spin(STREAM.timing.kernel()), duration_ns)


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine

    def get_engine_information(self, fmt: LayerInformationFormat) -> str:
        info = self._engine.spec["info"]
        if fmt is not LayerInformationFormat.JSON:
            return "\n".join(layer["Name"] for layer in info["Layers"])
        if self._engine.verbosity == ProfilingVerbosity.DETAILED.name:
            return json.dumps(info)
        return json.dumps(
            {"Layers": [layer["Name"] for layer in info["Layers"]], "Bindings": info["Bindings"]}
        )


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._profiler: IProfiler | None = None
        self.enqueue_emits_profile = True
        self.executions = 0
        self.reports = 0
        self._pending: list[tuple[str, float]] | None = None
        self._done_at = 0
        self.stand_in_truth: list[tuple[str, int, int]] = []
        #: (profiler class name or None, enqueue_emits_profile, truth) per execution, for tests
        self.log: list[tuple[str | None, bool, list[tuple[str, int, int]]]] = []
        CONTEXTS.append(self)

    @property
    def profiler(self) -> IProfiler | None:
        return self._profiler

    @profiler.setter
    def profiler(self, p: IProfiler | None) -> None:
        if p is not None and not isinstance(p, IProfiler):
            raise TypeError("profiler must be a tensorrt.IProfiler")
        self._profiler = p

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Enqueue the engine: host costs spent now, kernels placed on the simulated stream."""
        self.executions += 1
        t = STREAM.timing
        host = time.monotonic_ns()
        _, ev = STREAM.place(host, 0)  # boundary event before the first layer
        events, truth = [ev], []
        for name, samples in self.engine.samples:
            host = _spin(t.kernel())
            dur = int(self.engine.rng.choice(samples) * 1e6)
            start, end = STREAM.place(host, dur)
            truth.append((name, start, end))
            host = _spin(t.event())
            events.append(STREAM.place(host, 0)[1])
        self.stand_in_truth = truth
        prof = type(self._profiler).__name__ if self._profiler is not None else None
        self.log.append((prof, self.enqueue_emits_profile, truth))
        self._done_at = events[-1]
        self._pending = [
            (name, (events[k + 1] - events[k]) / 1e6) for k, (name, _, _) in enumerate(truth)
        ]
        if self.enqueue_emits_profile and self._profiler is not None:
            stand_in_synchronize()  # enqueue becomes synchronous, as documented
            self.report_to_profiler()
        return True

    if _MAJOR < 10:

        def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
            return self.execute_async_v3(stream_handle)

    def report_to_profiler(self) -> bool:
        if self._profiler is None or self._pending is None:
            return False
        if time.monotonic_ns() < self._done_at:
            print("[E] [TRT] reportToProfiler: the stream has not completed", file=sys.stderr)
            return False
        self.reports += 1
        for name, ms in self._pending:
            try:
                self._profiler.report_layer_time(name, ms)
            except Exception as e:  # pyCore.cpp PyProfiler: print and go on
                print(f"[ERROR] Exception caught in report_layer_time(): {e}", file=sys.stderr)
        self._pending = None
        return True


class ICudaEngine:
    """An engine: ``spec`` is {"info": engine inspector JSON, "latency_ms": {name: [ms, ...]}}."""

    def __init__(self, spec: dict[str, Any], verbosity: str, seed: int) -> None:
        self.spec = spec
        self.verbosity = verbosity
        self.seed = seed
        self.samples = [
            (layer["Name"], spec["latency_ms"][layer["Name"]]) for layer in spec["info"]["Layers"]
        ]
        self.rng = random.Random(seed)
        self.name = spec.get("name", "")

    @property
    def num_layers(self) -> int:
        return len(self.samples)

    def serialize(self) -> bytes:
        doc = {"spec": self.spec, "verbosity": self.verbosity, "seed": self.seed}
        return json.dumps(doc).encode()

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, blob: bytes) -> ICudaEngine:
        doc = json.loads(bytes(blob))
        return ICudaEngine(doc["spec"], doc["verbosity"], doc["seed"])
