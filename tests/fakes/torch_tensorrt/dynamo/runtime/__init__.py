"""Stand-in for ``torch_tensorrt.dynamo.runtime``: what each release exports."""

from __future__ import annotations

from torch_tensorrt import _generation
from torch_tensorrt.dynamo.runtime._TorchTensorRTModule import TorchTensorRTModule

__all__ = ["TorchTensorRTModule"]

if _generation.HAS_PYTHON_MODULE:
    from torch_tensorrt.dynamo.runtime._PythonTorchTensorRTModule import (
        PythonTorchTensorRTModule,
    )

    __all__ += ["PythonTorchTensorRTModule"]
