"""The worker's configuration file (format "jetpower.worker-config", version 1).

The supervisor writes one :class:`WorkerConfig` per model with :meth:`WorkerConfig.write` (or
:meth:`WorkerConfig.to_json`); the worker reads it back with :meth:`WorkerConfig.read`.  Parsing
checks every key and names the key, the value and what was expected, so a bad plan entry surfaces
as one clear message (exit status 2), never as a traceback.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jetpower._fs import atomic_write_text
from jetpower.errors import WorkerError

FORMAT = "jetpower.worker-config"
VERSION = 1

BACKENDS = ("tensorrt", "torch")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float16", "bfloat16")
#: per-layer energy of the torch backend: none, or the isolation pass (worker/isolate.py)
LAYER_ENERGY = ("off", "isolated")
#: the energy counter of the isolation pass: NVML on CUDA ("auto"), or the simulated one
LAYER_ENERGY_COUNTERS = ("auto", "nvml", "simulated")

#: exit statuses of ``python -m jetpower.worker`` (docs/FORMATS.md)
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FAILED = 3


class WorkerConfigError(WorkerError):
    """The worker cannot run this configuration (bad value, unknown model, missing dependency)."""

    exit_code = EXIT_CONFIG


class WorkerRunError(WorkerError):
    """The worker failed while running a valid configuration."""

    exit_code = EXIT_FAILED


def _dir_name(model: str) -> str:
    """The model's result directory name: the model name, with path-hostile characters replaced."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", model)


@dataclass(frozen=True)
class WorkerConfig:
    """One model's benchmark settings, as the worker receives them."""

    model: str
    result_dir: str
    backend: str = "tensorrt"
    device: str = "auto"
    dtype: str = "float16"
    input_shape: tuple[int, ...] | None = None  # None: the model's default
    warmup: int = 50
    runs: int = 30000
    profile_runs: int = 30000
    optimization_level: int = 3
    min_block_size: int = 5
    weights: str | None = None
    label: str | None = None  # the result directory's name; None: derived from the model name
    #: the run's CLOCK_REALTIME/CLOCK_MONOTONIC anchor, so that the worker's wall-clock text and
    #: the power log's come from one pair; None: the worker takes its own
    anchor: dict[str, int] | None = None
    #: "isolated": after the profiling pass, replay each leaf layer alone and measure its energy
    layer_energy: str = "off"
    #: the isolation pass's target: 95 % interval half-width / layer energy
    layer_energy_precision: float = 0.05
    #: the isolation pass starts no round that would end later than this, s
    layer_energy_max_seconds: float = 600.0
    layer_energy_counter: str = "auto"
    #: simulated runs only: the truth bus file (jetpower.sensors.truthbus) on which the torch
    #: backend publishes the layer it runs, so that the simulated sensor's power follows it;
    #: None (every real run): nothing is published
    truth_bus: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = _validate(self)
        if problems:
            raise WorkerConfigError("invalid worker configuration: " + "; ".join(problems))

    # -- paths --------------------------------------------------------------------------------

    @property
    def model_dir(self) -> Path:
        """``<result_dir>/<model>/``, where every file of this model goes."""
        return Path(self.result_dir) / _dir_name(self.label or self.model)

    # -- (de)serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return {"format": FORMAT, "version": VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the config atomically (temporary name, then rename) and return its path."""
        path = Path(path)
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerConfig:
        if not isinstance(d, dict):
            raise WorkerConfigError("worker configuration must be a JSON object")
        if d.get("format") != FORMAT:
            raise WorkerConfigError(f"config 'format' is {d.get('format')!r}, expected {FORMAT!r}")
        if d.get("version") != VERSION:
            raise WorkerConfigError(
                f"config 'version' {d.get('version')!r} is not supported "
                f"(this worker reads {VERSION})"
            )
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = sorted(set(d) - known - {"format", "version"})
        if unknown:
            raise WorkerConfigError(f"unknown config key(s): {', '.join(unknown)}")
        for key in ("model", "result_dir"):
            if key not in d:
                raise WorkerConfigError(f"config key {key!r} is missing")
        kw = {k: v for k, v in d.items() if k in known}
        shape = kw.get("input_shape")
        if shape is not None:
            if not isinstance(shape, list | tuple) or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in shape
            ):
                raise WorkerConfigError(
                    f"config 'input_shape' is {shape!r}, expected a list of positive integers"
                )
            kw["input_shape"] = tuple(shape)
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkerConfigError(f"worker configuration is not valid JSON: {e}") from e
        return cls.from_dict(d)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> WorkerConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise WorkerConfigError(f"cannot read worker configuration {path}: {e}") from e
        return cls.from_json(text)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate(c: WorkerConfig) -> list[str]:
    p: list[str] = []
    if not isinstance(c.model, str) or not c.model.strip():
        p.append(f"'model' is {c.model!r}, expected a model name")
    if not isinstance(c.result_dir, str) or not c.result_dir:
        p.append(f"'result_dir' is {c.result_dir!r}, expected a directory path")
    if c.backend not in BACKENDS:
        p.append(f"'backend' is {c.backend!r}, expected one of {', '.join(BACKENDS)}")
    if c.device not in DEVICES:
        p.append(f"'device' is {c.device!r}, expected one of {', '.join(DEVICES)}")
    if c.dtype not in DTYPES:
        p.append(f"'dtype' is {c.dtype!r}, expected one of {', '.join(DTYPES)}")
    if c.input_shape is not None and (
        len(c.input_shape) < 2 or not all(_is_int(n) and n > 0 for n in c.input_shape)
    ):
        p.append(
            f"'input_shape' is {list(c.input_shape)!r}, expected at least two positive integers "
            "(batch first), e.g. [1, 3, 224, 224]"
        )
    for key, low in (("warmup", 0), ("runs", 1), ("profile_runs", 0), ("min_block_size", 1)):
        v = getattr(c, key)
        if not _is_int(v) or v < low:
            p.append(f"'{key}' is {v!r}, expected an integer >= {low}")
    lvl = c.optimization_level
    if not _is_int(lvl) or not 0 <= lvl <= 5:
        p.append(f"'optimization_level' is {lvl!r}, expected an integer 0..5")
    if c.label is not None and (
        not isinstance(c.label, str) or _dir_name(c.label) != c.label or c.label in {".", ".."}
    ):
        p.append(f"'label' is {c.label!r}, expected a plain directory name")
    if c.layer_energy not in LAYER_ENERGY:
        p.append(f"'layer_energy' is {c.layer_energy!r}, expected one of {', '.join(LAYER_ENERGY)}")
    elif c.layer_energy == "isolated" and c.backend != "torch":
        p.append(f"'layer_energy' \"isolated\" needs backend 'torch', got {c.backend!r}")
    if c.layer_energy_counter not in LAYER_ENERGY_COUNTERS:
        p.append(
            f"'layer_energy_counter' is {c.layer_energy_counter!r}, expected one of "
            f"{', '.join(LAYER_ENERGY_COUNTERS)}"
        )
    for key, hi in (("layer_energy_precision", 1.0), ("layer_energy_max_seconds", 604800.0)):
        v = getattr(c, key)
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= hi:
            p.append(f"'{key}' is {v!r}, expected a number greater than 0 and at most {hi:g}")
    if c.truth_bus is not None and (not isinstance(c.truth_bus, str) or not c.truth_bus):
        p.append(f"'truth_bus' is {c.truth_bus!r}, expected the truth bus file's path or null")
    if c.weights is not None and not isinstance(c.weights, str):
        p.append(f"'weights' is {c.weights!r}, expected a local file path or null")
    return p
