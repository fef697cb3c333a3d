"""Stand-in for ``torch_tensorrt`` (the dynamo API subset, per release), for tests only.

See ``_generation.py`` for how the release is chosen and ``../README.md`` for what is modelled.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import torch

from torch_tensorrt import _generation

__version__ = _generation.VERSION

FeatureSet = namedtuple("FeatureSet", ["torch_tensorrt_runtime", "dynamo_frontend"])
ENABLED_FEATURES = FeatureSet(_generation.CPP_RUNTIME, True)

from torch_tensorrt import dynamo  # noqa: E402


def compile(module: Any, ir: str = "dynamo", inputs: Any = None, **kwargs: Any) -> Any:
    ep = torch.export.export(module, tuple(inputs))
    return dynamo.compile(ep, inputs=inputs, **kwargs)


__all__ = ["ENABLED_FEATURES", "compile", "dynamo"]
