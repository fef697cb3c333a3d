"""Stand-in for 2.13's Python ``TRTEngine`` (runtime/_TRTEngine.py; absent before 2.13)."""

from __future__ import annotations

from typing import Any

import tensorrt as trt

from torch_tensorrt import _generation

if not _generation.at_least(2, 13):
    raise ImportError("torch_tensorrt.dynamo.runtime._TRTEngine exists from torch-tensorrt 2.13")

#: the serialized layout's length and engine index (runtime/_serialized_engine_layout.py)
SERIALIZATION_LEN = 12
ENGINE_IDX = 3


class TRTEngine:
    """``cuda_engine`` (ICudaEngine), ``context`` (lazily created, read-only), ``execute()``."""

    def __init__(self, serialized_info: list[Any], *, profile_execution: bool = False) -> None:
        if len(serialized_info) != SERIALIZATION_LEN:
            raise RuntimeError(
                f"Expected serialized info length {SERIALIZATION_LEN}, got {len(serialized_info)}"
            )
        blob = serialized_info[ENGINE_IDX]
        if not isinstance(blob, (bytes, bytearray)):
            raise TypeError("Expected serialized engine as bytes")
        self.runtime = trt.Runtime(trt.Logger())
        self.cuda_engine = self.runtime.deserialize_cuda_engine(blob)
        self._profile_execution = profile_execution
        self._context: Any = None

    @property
    def context(self) -> Any:
        if self._context is None:
            self._context = self.cuda_engine.create_execution_context()
        return self._context

    def invalidate_context(self) -> None:
        self._context = None

    def execute(self, inputs: list[Any]) -> Any:
        trt.stand_in_host_cost()
        self.context.execute_async_v3(0)
        return inputs[0] * 1.0

    def enable_profiling(self) -> None:
        if not self.context.profiler:
            self.context.profiler = trt.Profiler()
        self._profile_execution = True

    def disable_profiling(self) -> None:
        self._profile_execution = False

    def get_engine_layer_info(self) -> str:
        inspector = self.cuda_engine.create_engine_inspector()
        return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
