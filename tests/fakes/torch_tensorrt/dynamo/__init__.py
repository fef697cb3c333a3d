"""Stand-in for ``torch_tensorrt.dynamo``: ``compile`` returns a module with several engines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tensorrt as trt
import torch

from torch_tensorrt.dynamo import runtime

#: keyword arguments of every compile call, for tests to inspect
CALLS: list[dict[str, Any]] = []

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "trt" / "resnet18_two_engines.json"


class _Compiled(torch.nn.Module):
    """Like torch-tensorrt's GraphModule: engine, PyTorch fallback op, engine."""

    def __init__(self, engines: list[trt.ICudaEngine]) -> None:
        super().__init__()
        self.names = []
        for i, e in enumerate(engines):
            name = f"_run_on_acc_{2 * i}"
            self.add_module(name, runtime.PythonTorchTensorRTModule(e, name=name))
            self.names.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(self.names):
            if i:
                x = torch.relu(x)  # the PyTorch fallback between engines
            x = getattr(self, name)(x)
        return x


def compile(
    exported_program: torch.export.ExportedProgram,
    inputs: Any = None,
    *,
    enabled_precisions: Any = None,
    optimization_level: int | None = None,
    min_block_size: int = 5,
    use_python_runtime: bool = False,
    debug: bool = False,
    **kwargs: Any,
) -> torch.nn.Module:
    if not isinstance(exported_program, torch.export.ExportedProgram):
        raise TypeError("dynamo.compile expects a torch.export.ExportedProgram")
    CALLS.append(
        {
            "inputs": inputs,
            "enabled_precisions": enabled_precisions,
            "optimization_level": optimization_level,
            "min_block_size": min_block_size,
            "use_python_runtime": use_python_runtime,
            "debug": debug,
            **kwargs,
        }
    )
    if not use_python_runtime:
        raise RuntimeError("stand-in: only the Python runtime is implemented")
    fixture = json.loads(Path(os.environ.get("JETPOWER_FAKE_TRT_FIXTURE", FIXTURE)).read_text())
    engines = [
        trt.ICudaEngine(e["info"], e["latency_ms"], seed=i)
        for i, e in enumerate(fixture["engines"])
    ]
    return _Compiled(engines)
