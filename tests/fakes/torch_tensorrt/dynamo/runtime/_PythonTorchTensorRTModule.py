"""Stand-in for 2.4-2.12's Python runtime module (absent from 2.13: pytorch/TensorRT PR #4222)."""

from __future__ import annotations

from typing import Any

import tensorrt as trt
import torch

from torch_tensorrt import _generation

if not _generation.HAS_PYTHON_MODULE:
    raise ImportError("PythonTorchTensorRTModule was removed in torch-tensorrt 2.13")


class PythonTorchTensorRTModule(torch.nn.Module):
    """One engine: ``engine`` (the ICudaEngine, never ``cuda_engine``) and ``context``."""

    def __init__(self, serialized_engine: bytes, *, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(serialized_engine)
        self.context = self.engine.create_execution_context()
        self.profiling_enabled = False

    def forward(self, *inputs: Any) -> Any:
        trt.stand_in_host_cost()
        if _generation.MM < (2, 4):  # the NGC 24.06-igpu snapshot: TensorRT 8.6 bindings API
            self.context.execute_async_v2([], 0)
        else:
            self.context.execute_async_v3(0)
        return inputs[0] * 1.0

    def enable_profiling(self, profiler: Any = None) -> None:
        if not self.context.profiler:
            self.context.profiler = trt.Profiler() if profiler is None else profiler
        self.profiling_enabled = True

    def disable_profiling(self) -> None:
        trt.stand_in_synchronize()
        del self.context
        self.context = self.engine.create_execution_context()
        self.profiling_enabled = False

    def get_layer_info(self) -> str:
        inspector = self.engine.create_engine_inspector()
        return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
