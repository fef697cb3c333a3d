"""Stand-in for ``TorchTensorRTModule``: the C++ runtime's module (all releases), and from 2.13
the one module of both runtimes (``engine``: the C++ ``torch.classes.tensorrt.Engine``, or the
Python ``TRTEngine`` in a Python-only build; v2.13.0 runtime/_TorchTensorRTModule.py)."""

from __future__ import annotations

from typing import Any

import tensorrt as trt
import torch

from torch_tensorrt import _generation


class CppEngine:
    """``torch.classes.tensorrt.Engine``: its IExecutionContext is not reachable from Python."""

    def __init__(self, serialized_info: list[Any]) -> None:
        engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(serialized_info[3])
        self.__cpp = (engine, engine.create_execution_context())
        self.profile_path_prefix = "/tmp"

    def execute(self, inputs: list[Any]) -> Any:
        trt._spin(trt.STREAM.timing.kernel())  # the C++ runtime's host cost is small
        self.__cpp[1].execute_async_v3(0)
        return inputs[0] * 1.0

    def enable_profiling(self) -> None:  # writes trace files in C++; not modelled
        pass

    def disable_profiling(self) -> None:
        pass

    def get_engine_layer_info(self) -> str:
        inspector = self.__cpp[0].create_engine_inspector()
        return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


class TorchTensorRTModule(torch.nn.Module):
    def __init__(self, serialized_engine: bytes | None = None, *, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.serialized_engine = serialized_engine
        self.engine: Any = None
        self.profiling_enabled = False
        if serialized_engine:
            self.setup_engine()

    def _pack_engine_info(self) -> list[Any]:
        assert self.serialized_engine is not None
        return ["8", f"{self.name}_engine", "0%8%7%Orin%0", self.serialized_engine, "x", "out",
                "0", "meta", "linux_aarch64", "0", "0", "0"]

    def setup_engine(self) -> None:
        if self.engine is not None:
            return
        if _generation.at_least(2, 13) and not _generation.CPP_RUNTIME:
            from torch_tensorrt.dynamo.runtime._TRTEngine import TRTEngine

            self.engine = TRTEngine(self._pack_engine_info())
        else:
            self.engine = CppEngine(self._pack_engine_info())

    def forward(self, *inputs: Any) -> Any:
        # torch.ops.tensorrt.execute_engine(inputs, self.engine): the C++ op, or in a Python-only
        # build the Python custom op that calls engine.execute
        return self.engine.execute(list(inputs))

    def enable_profiling(self, profiling_results_dir: str | None = None,
                         profile_format: str = "perfetto") -> None:
        self.engine.enable_profiling()
        self.profiling_enabled = True

    def disable_profiling(self) -> None:
        self.engine.disable_profiling()
        self.profiling_enabled = False

    def get_layer_info(self) -> str:
        return str(self.engine.get_engine_layer_info())
