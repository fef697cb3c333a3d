"""``[benchmark]`` defaults and the ``models`` list of a plan, resolved into :class:`ModelPlan`.

Each entry of ``models`` is a model name (``"resnet18"``) or a table (``{name = "lenet", runs =
100}`` / ``[[models]]``) whose keys override ``[benchmark]``. A model's directory in the result
directory is its ``label``: by default the name, or for ``package.module:factory`` the factory's
name. Two models with the same directory are an error.

Per-layer energy by isolation (``layer_energy = "isolated"``, torch backend only; default
``"off"``): after the profiling pass each leaf layer is replayed alone against the GPU's energy
counter (``jetpower/worker/isolate.py``) until its 95 % interval is within
``layer_energy_precision`` of its energy, or ``layer_energy_max_seconds`` have passed.

Input shape, most specific first: the model's own ``input_shape``; the built-in model's own input
(``jetpower.worker.models.default_input_shape``: lenet 1x1x32x32, tinycnn 1x3x16x16); ``[benchmark]
input_shape``; 1x3x224x224.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jetpower.plan._schema import (
    Problems,
    Table,
    check_dir_name,
    check_int,
    check_rate,
    show,
)
from jetpower.worker.config import BACKENDS, DEVICES, DTYPES
from jetpower.worker.models import DEFAULT_INPUT_SHAPE, builtin_names, default_input_shape

#: names a model directory may not take: jetpower's own files in the result directory
_RESERVED = ("idling_power.json", "run.log.jsonl")

LAYER_ENERGY = ("off", "isolated")
BENCHMARK_KEYS = (
    "backend", "device", "dtype", "input_shape", "warmup", "runs", "profile_runs",
    "optimization_level", "min_block_size", "timeout_seconds", "rate_hz",
    "layer_energy", "layer_energy_precision", "layer_energy_max_seconds",
)  # fmt: skip
MODEL_KEYS = ("name", "label", *BENCHMARK_KEYS)

#: the built-in defaults: the original experiment (None: resolved per model, see the module doc)
BUILTIN: dict[str, Any] = {
    "backend": "tensorrt",
    "device": "auto",
    "dtype": "float16",
    "input_shape": None,
    "warmup": 50,
    "runs": 30000,
    "profile_runs": None,
    "optimization_level": 3,
    "min_block_size": 5,
    "timeout_seconds": 7200.0,
    "rate_hz": None,
    "layer_energy": "off",
    "layer_energy_precision": 0.05,
    "layer_energy_max_seconds": 600.0,
}

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}", re.ASCII)
_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:([A-Za-z_]\w*)", re.ASCII)
_NAME_EXPECTED = (
    'a model name: a built-in or torchvision name such as "resnet18", or "package.module:factory"'
)


@dataclass(frozen=True)
class ModelPlan:
    """One model of the campaign with every setting resolved."""

    #: what the worker builds: a built-in/torchvision name, or "package.module:factory"
    name: str
    #: the model's directory name in the result directory
    label: str
    backend: str
    device: str
    dtype: str
    input_shape: tuple[int, ...]
    warmup: int
    runs: int
    #: inferences of the separate profiling pass (0: no profiling pass)
    profile_runs: int
    optimization_level: int
    min_block_size: int
    timeout_seconds: float
    #: the sampler rate (the plan's, or this model's override)
    rate_hz: float
    #: "isolated": the isolation pass of per-layer energy after profiling; "off": none
    layer_energy: str = "off"
    #: the isolation pass's target: 95 % interval half-width / layer energy
    layer_energy_precision: float = 0.05
    #: the isolation pass's time cap, s
    layer_energy_max_seconds: float = 600.0

    @property
    def is_factory(self) -> bool:
        return ":" in self.name


def _check_shape(problems: Problems, path: str, raw: Any) -> tuple[int, ...] | None:
    expected = "an array of 1 to 8 positive integers, e.g. [1, 3, 224, 224]"
    if not isinstance(raw, list) or not 1 <= len(raw) <= 8:
        problems.bad(path, raw, expected, with_kind=not isinstance(raw, list))
        return None
    dims = [check_int(problems, f"{path}[{i}]", v, 1, 65536) for i, v in enumerate(raw)]
    return None if None in dims else tuple(d for d in dims if d is not None)


def _read_benchmark(t: Table, base: dict[str, Any]) -> dict[str, Any]:
    p = t.problems
    return {
        "backend": t.choice("backend", base["backend"], BACKENDS),
        "device": t.choice("device", base["device"], DEVICES),
        "dtype": t.choice("dtype", base["dtype"], DTYPES),
        "input_shape": t.value(
            "input_shape", base["input_shape"], lambda a, v: _check_shape(p, a, v)
        ),
        "warmup": t.integer("warmup", base["warmup"], 0, 10_000_000),
        "runs": t.integer("runs", base["runs"], 1, 100_000_000),
        "profile_runs": t.integer("profile_runs", base["profile_runs"], 0, 100_000_000),
        "optimization_level": t.integer("optimization_level", base["optimization_level"], 0, 5),
        "min_block_size": t.integer("min_block_size", base["min_block_size"], 1, 1_000_000),
        "timeout_seconds": t.number(
            "timeout_seconds", base["timeout_seconds"], 0, 604_800, lo_open=True
        ),
        "rate_hz": t.value("rate_hz", base["rate_hz"], lambda a, v: check_rate(p, a, v)),
        "layer_energy": t.choice("layer_energy", base["layer_energy"], LAYER_ENERGY),
        "layer_energy_precision": t.number(
            "layer_energy_precision", base["layer_energy_precision"], 0, 1, lo_open=True
        ),
        "layer_energy_max_seconds": t.number(
            "layer_energy_max_seconds", base["layer_energy_max_seconds"], 0, 604_800, lo_open=True
        ),
    }


def _check_device(problems: Problems, path: str, values: dict[str, Any]) -> None:
    if values["backend"] == "tensorrt" and values["device"] == "cpu":
        problems.add(path, 'backend "tensorrt" needs device "cuda" or "auto", got device "cpu"')


def _check_layer_energy(problems: Problems, path: str, values: dict[str, Any]) -> None:
    if values["layer_energy"] == "isolated" and values["backend"] != "torch":
        problems.add(
            path,
            f'layer_energy "isolated" needs backend "torch", got backend "{values["backend"]}" '
            "(TensorRT engines fuse layers: there is no leaf layer to replay alone)",
        )


def parse_benchmark(t: Table) -> dict[str, Any]:
    """The ``[benchmark]`` table over the built-in defaults (unknown keys: see ``Table.finish``)."""
    values = _read_benchmark(t, BUILTIN)
    if t.has("backend") or t.has("device"):
        _check_device(t.problems, "benchmark", values)
    if t.has("layer_energy") or t.has("backend"):
        _check_layer_energy(t.problems, "benchmark", values)
    return values


def check_model_name(problems: Problems, path: str, raw: Any) -> str | None:
    """A model name: no path separator, no ``..``; a plain name or ``package.module:factory``."""
    if not isinstance(raw, str) or not raw:
        problems.bad(path, raw, _NAME_EXPECTED, with_kind=not isinstance(raw, str))
    elif "/" in raw or "\\" in raw or ".." in raw:
        problems.add(
            path, f"{show(raw)} looks like a path; expected {_NAME_EXPECTED} (no '/', '\\' or '..')"
        )
    elif ":" in raw:
        if len(raw) <= 200 and _FACTORY.fullmatch(raw):
            return raw
        problems.bad(path, raw, '"package.module:factory" (Python identifiers)')
    elif _PLAIN_NAME.fullmatch(raw):
        return raw
    else:
        problems.bad(path, raw, _NAME_EXPECTED + " (letters, digits, '_', '.', '+', '-')")
    return None


def _check_label(problems: Problems, path: str, raw: Any) -> str | None:
    label = check_dir_name(problems, path, raw, "a directory name")
    if label is not None and (label.startswith("jetpower_") or label in _RESERVED):
        problems.add(
            path, f"{show(label)} is a name jetpower uses for its own files; choose another"
        )
        return None
    return label


def parse_models(
    problems: Problems, data: dict[str, Any], defaults: dict[str, Any], sampler_rate: float
) -> tuple[ModelPlan, ...]:
    """The ``models`` array of the plan, each entry merged over ``defaults``."""
    if "models" not in data:
        problems.add(
            "models",
            'missing: list the models to measure, e.g. models = ["resnet18", "lenet"] or '
            "[[models]] tables (plan.toml in the repository lists the original 20)",
        )
        return ()
    raw = data["models"]
    if not isinstance(raw, list):
        problems.bad("models", raw, "an array of model names or [[models]] tables", with_kind=True)
        return ()
    if not raw:
        problems.add("models", "empty: a plan measures at least one model")
        return ()
    out: list[ModelPlan] = []
    dirs: dict[str, str] = {}
    for i, entry in enumerate(raw):
        path = f"models[{i}]"
        if isinstance(entry, str):
            item, name_path = {"name": entry}, path
        elif isinstance(entry, dict):
            item, name_path = entry, f"{path}.name"
        else:
            problems.bad(path, entry, "a model name or a table with name = ...", with_kind=True)
            continue
        t = Table(problems, path, item, MODEL_KEYS)
        t.finish()
        if "name" not in item:
            problems.add(name_path, "missing: every model needs a name")
        name = check_model_name(problems, name_path, item["name"]) if "name" in item else None
        values = _read_benchmark(t, defaults)
        if t.has("backend") or t.has("device"):
            _check_device(problems, path, values)
        if t.has("layer_energy") or t.has("backend"):
            _check_layer_energy(problems, path, values)
        if name is None:
            continue
        found = _FACTORY.fullmatch(name)
        if t.has("label"):
            label = _check_label(problems, t.at("label"), item["label"])
        else:
            label = _check_label(problems, name_path, found.group(1) if found else name)
        if label is None:
            continue
        if label in dirs:
            where = t.at("label") if t.has("label") else name_path
            problems.add(
                where,
                f"duplicate model: {show(label)} is also the directory of {dirs[label]}; "
                "give one of them a different label",
            )
        dirs.setdefault(label, path)
        if t.has("input_shape"):
            shape = values["input_shape"]
        else:
            builtin = default_input_shape(name) if name in builtin_names() else None
            shape = builtin or values["input_shape"] or DEFAULT_INPUT_SHAPE
        out.append(
            ModelPlan(
                name=name,
                label=label,
                backend=values["backend"],
                device=values["device"],
                dtype=values["dtype"],
                input_shape=tuple(shape or DEFAULT_INPUT_SHAPE),
                warmup=values["warmup"],
                runs=values["runs"],
                profile_runs=values["runs"]
                if values["profile_runs"] is None
                else values["profile_runs"],
                optimization_level=values["optimization_level"],
                min_block_size=values["min_block_size"],
                timeout_seconds=values["timeout_seconds"],
                rate_hz=sampler_rate if values["rate_hz"] is None else values["rate_hz"],
                layer_energy=values["layer_energy"],
                layer_energy_precision=values["layer_energy_precision"],
                layer_energy_max_seconds=values["layer_energy_max_seconds"],
            )
        )
    return tuple(out)
