"""Stand-in for ``torch_tensorrt`` (2.4 dynamo API subset), for tests only."""

from __future__ import annotations

from typing import Any

import torch

from torch_tensorrt import dynamo

__version__ = "2.4.0+standin"


def compile(module: Any, ir: str = "dynamo", inputs: Any = None, **kwargs: Any) -> Any:
    ep = torch.export.export(module, tuple(inputs))
    return dynamo.compile(ep, inputs=inputs, **kwargs)


__all__ = ["compile", "dynamo"]
