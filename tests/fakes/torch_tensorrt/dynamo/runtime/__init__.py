"""Stand-in for ``torch_tensorrt.dynamo.runtime``."""

from __future__ import annotations

from typing import Any

import tensorrt as trt
import torch


class PythonTorchTensorRTModule(torch.nn.Module):
    """One engine; ``engine`` and ``context`` as in torch-tensorrt 2.4's Python runtime."""

    def __init__(self, engine: trt.ICudaEngine, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.engine = engine
        self.context = engine.create_execution_context()

    def forward(self, *inputs: Any) -> Any:
        self.context.execute_async_v3(0)
        return inputs[0] * 1.0
