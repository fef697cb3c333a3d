"""Stand-in for the ``tensorrt`` Python package (TensorRT 10 API subset), for tests only."""

from __future__ import annotations

import enum
import json
import random
import time
from typing import Any

JETPOWER_STAND_IN = True
__version__ = "10.1.0+standin"

#: every execution context created, for tests to inspect
CONTEXTS: list[IExecutionContext] = []


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class IProfiler:
    """Subclass and override ``report_layer_time`` (as with the real bindings)."""

    def __init__(self) -> None:
        pass

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        raise NotImplementedError


class EngineInspector:
    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info

    def get_engine_information(self, fmt: LayerInformationFormat) -> str:
        if fmt is LayerInformationFormat.JSON:
            return json.dumps(self._info)
        return "\n".join(layer["Name"] for layer in self._info["Layers"])


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.profiler: IProfiler | None = None
        self.enqueue_emits_profile = True
        self.executions = 0
        self.reports = 0
        self._pending: list[tuple[str, float]] | None = None
        CONTEXTS.append(self)

    def execute_async_v3(self, stream_handle: int) -> bool:
        """'Run' the engine: draw each layer's latency and spin for their sum."""
        self.executions += 1
        times = [(n, self.engine.rng.choice(s)) for n, s in self.engine.samples]
        deadline = time.monotonic_ns() + int(sum(ms for _, ms in times) * 1e6)
        while time.monotonic_ns() < deadline:
            pass
        self._pending = times
        if self.enqueue_emits_profile:
            self.report_to_profiler()
        return True

    def report_to_profiler(self) -> bool:
        if self.profiler is None or self._pending is None:
            return False
        self.reports += 1
        for name, ms in self._pending:
            self.profiler.report_layer_time(name, ms)
        self._pending = None
        return True


class ICudaEngine:
    def __init__(self, info: dict[str, Any], latency_ms: dict[str, list[float]], seed: int) -> None:
        self.info = info
        self.samples = [(layer["Name"], latency_ms[layer["Name"]]) for layer in info["Layers"]]
        self.rng = random.Random(seed)

    @property
    def num_layers(self) -> int:
        return len(self.samples)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self.info)

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)
