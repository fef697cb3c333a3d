"""The models jetpower benchmarks, built by name.

- ``lenet`` and ``tinycnn`` are built in (``tinycnn`` is a few-layer model for fast tests);
- torchvision's classification models by name, when torchvision is installed: random weights by
  default (power and runtime do not depend on trained values); pretrained weights only from a local
  file or the local torch hub cache, never downloaded at run time;
- ``package.module:factory`` for anything else: ``factory()`` must return a ``torch.nn.Module``.

torch is imported inside the functions: importing this module costs nothing, so the supervisor can
call :func:`default_input_shape` and :func:`builtin_names` without torch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from jetpower.errors import WorkerError


class ModelError(WorkerError):
    """Unknown model, unusable factory or weights (a configuration error: exit status 2)."""

    exit_code = 2


DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 3, 224, 224)
_BUILTIN_SHAPES: dict[str, tuple[int, ...]] = {"lenet": (1, 1, 32, 32), "tinycnn": (1, 3, 16, 16)}


def builtin_names() -> list[str]:
    return sorted(_BUILTIN_SHAPES)


def default_input_shape(name: str) -> tuple[int, ...]:
    """The input shape a model gets when the configuration names none."""
    return _BUILTIN_SHAPES.get(name, DEFAULT_INPUT_SHAPE)


def torchvision_names() -> list[str]:
    """torchvision's classification model names, or [] when torchvision is not installed."""
    try:
        import torchvision
    except ImportError:
        return []
    return sorted(torchvision.models.list_models(module=torchvision.models))


def available() -> str:
    """A human-readable list of what can be named, for error messages."""
    tv = torchvision_names()
    parts = ["built in: " + ", ".join(builtin_names())]
    parts.append(
        "torchvision: " + ", ".join(tv)
        if tv
        else "torchvision models: not available (torchvision is not installed)"
    )
    parts.append("or any 'package.module:factory' returning a torch.nn.Module")
    return "; ".join(parts)


def build(name: str, weights: str | None = None) -> Any:
    """Build model ``name`` (a ``torch.nn.Module`` in eval mode, on the CPU, float32)."""
    if name == "lenet":
        model = _lenet()
    elif name == "tinycnn":
        model = _tinycnn()
    elif ":" in name:
        model = _from_factory(name)
    elif name in torchvision_names():
        model = _torchvision(name, weights)
        weights = None  # consumed
    else:
        raise ModelError(f"unknown model {name!r}. Available: {available()}")
    if weights is not None:
        _load_state(model, Path(weights))
    return model.eval()


def _lenet() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 128, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 16, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(576, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def _tinycnn() -> Any:
    from torch import nn

    class TinyCNN(nn.Module):
        """Two convolutions sharing one ReLU module (a leaf called twice per inference)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, kernel_size=3, padding=1, stride=2)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x: Any) -> Any:
            x = self.act(self.conv1(x))
            x = self.act(self.conv2(x))
            return self.fc(self.pool(x).flatten(1))

    return TinyCNN()


def _from_factory(spec: str) -> Any:
    from torch import nn

    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelError(f"model {spec!r}: cannot import {mod_name!r}: {e}") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model {spec!r}: {mod_name!r} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {spec!r}: the factory returned {type(model).__name__}, not a Module"
        )
    return model


def _torchvision(name: str, weights: str | None) -> Any:
    import torch
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if weights is None:
        return model
    if os.path.sep in weights or weights.endswith((".pth", ".pt")):
        _load_state(model, Path(weights))
        return model
    # a weights enum name (e.g. "IMAGENET1K_V1", "DEFAULT"): only from the local hub cache
    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except (KeyError, ValueError) as e:
        raise ModelError(f"model {name!r} has no weights named {weights!r}") from e
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not cached.is_file():
        raise ModelError(
            f"weights {name}:{weights} are not in the local cache ({cached}); jetpower never "
            "downloads at run time: fetch them beforehand or give a file path as 'weights'"
        )
    _load_state(model, cached)
    return model


def _load_state(model: Any, path: Path) -> None:
    import torch

    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelError(f"cannot load weights {path}: {e}") from e
