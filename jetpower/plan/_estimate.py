"""How long a plan will take: a guess, stated as one.

Idle and cooldown phases last what the plan says (thermal cooldowns: at most ``max_seconds``). A
benchmark's length depends on the board, so it is guessed from the model's approximate compute
(GFLOPs at a 224x224 input, scaled by the input's element count) and a per-backend cost per GFLOP,
plus a fixed setup time (load, compile) per model. The figures below are rough Jetson Orin-class
guesses; `validate` labels the result as a guess.

The isolation pass of per-layer energy (``layer_energy = "isolated"``) lasts about layers x
repetitions x one block, a block being a settling time (one update of the energy counter, NVML:
100 ms) plus on average (periods + 0.5) updates, capped by ``layer_energy_max_seconds``;
``jetpower/worker/isolate.py`` uses the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: approximate GFLOPs of one inference at input 1x3x224x224 (lenet: at 1x1x32x32)
GFLOPS: dict[str, float] = {
    "alexnet": 0.71,
    "vgg11": 7.6,
    "vgg13": 11.3,
    "vgg16": 15.5,
    "vgg19": 19.6,
    "mobilenet_v2": 0.30,
    "mobilenet_v3_small": 0.06,
    "mobilenet_v3_large": 0.22,
    "resnet18": 1.8,
    "resnet34": 3.7,
    "resnet50": 4.1,
    "resnet101": 7.8,
    "resnet152": 11.5,
    "lenet": 0.0046,
    "resnext50_32x4d": 4.3,
    "resnext101_32x8d": 16.4,
    "resnext101_64x4d": 15.5,
    "convnext_tiny": 4.5,
    "convnext_small": 8.7,
    "convnext_base": 15.4,
    "tinycnn": 0.001,
}
#: elements of the input the GFLOPs above refer to
_REFERENCE_ELEMENTS: dict[str, int] = {"lenet": 1 * 1 * 32 * 32}
_DEFAULT_ELEMENTS = 1 * 3 * 224 * 224
#: a model not in the table
_UNKNOWN_GFLOPS = 4.0

#: (backend, device) -> (fixed ms per inference, ms per GFLOP, setup seconds per model)
_COST: dict[tuple[str, str], tuple[float, float, float]] = {
    ("tensorrt", "cuda"): (0.3, 0.6, 120.0),
    ("torch", "cuda"): (1.5, 0.8, 15.0),
    ("torch", "cpu"): (0.1, 25.0, 5.0),
}
#: a profiled inference costs more than a timed one (profiler callbacks, synchronisation)
PROFILE_FACTOR = 1.5

#: leaf-module calls per inference (layers of the torch backend), where known
LEAF_LAYERS: dict[str, int] = {
    "alexnet": 21,
    "vgg11": 29,
    "vgg13": 33,
    "vgg16": 39,
    "vgg19": 45,
    "mobilenet_v2": 141,
    "mobilenet_v3_small": 120,
    "mobilenet_v3_large": 160,
    "resnet18": 60,
    "resnet34": 108,
    "resnet50": 158,
    "resnet101": 311,
    "resnet152": 464,
    "lenet": 12,
    "resnext50_32x4d": 158,
    "resnext101_32x8d": 311,
    "resnext101_64x4d": 311,
    "convnext_tiny": 156,
    "convnext_small": 300,
    "convnext_base": 300,
    "tinycnn": 6,
}
_UNKNOWN_LAYERS = 150
#: the isolation pass's defaults: rounds, counter periods per block, settling time, the counter's
#: update period (NVML on an H100/H200)
ISOLATION_REPETITIONS = 3
ISOLATION_PERIODS = 3
ISOLATION_SETTLE_S = 0.02
ISOLATION_SETTLE_PERIODS = 1.0
ISOLATION_COUNTER_PERIOD_S = 0.1

NOTE = (
    "a guess: benchmark time is estimated from each model's approximate GFLOPs and a typical "
    "Jetson Orin-class speed; real boards differ by several times"
)


def inference_seconds(name: str, *, backend: str, device: str, input_shape: Sequence[int]) -> float:
    """Guessed seconds of one inference of ``name`` on ``backend``/``device``."""
    dev = "cuda" if device == "auto" else device
    fixed_ms, ms_per_gflop, _ = _COST.get((backend, dev), _COST[("torch", "cuda")])
    elements = math.prod(input_shape)
    scale = elements / _REFERENCE_ELEMENTS.get(name, _DEFAULT_ELEMENTS)
    return (fixed_ms + GFLOPS.get(name, _UNKNOWN_GFLOPS) * scale * ms_per_gflop) / 1000.0


def benchmark_seconds(
    name: str,
    *,
    backend: str,
    device: str,
    input_shape: Sequence[int],
    passes: tuple[int, int, int],
    timeout_seconds: float,
    isolation_s: float = 0.0,
) -> float:
    """Guessed seconds of one model's benchmark phase; ``passes`` is (warmup, runs, profile_runs),
    ``isolation_s`` the isolation pass's (:func:`model_isolation_seconds`; 0 when off).

    Never more than the model's timeout: the worker is stopped there.
    """
    dev = "cuda" if device == "auto" else device
    setup = _COST.get((backend, dev), _COST[("torch", "cuda")])[2]
    one = inference_seconds(name, backend=backend, device=device, input_shape=input_shape)
    warmup, runs, profile_runs = passes
    total = setup + one * (warmup + runs) + one * PROFILE_FACTOR * profile_runs + isolation_s
    return min(total, timeout_seconds)


def isolation_block_seconds(
    periods: int, settle_s: float, settle_periods: float, period_s: float
) -> float:
    """One block of the isolation pass: settling, half a period on average until the next edge,
    then ``periods`` periods."""
    return max(settle_s, settle_periods * period_s) + (periods + 0.5) * period_s


def isolation_seconds(
    layers: int,
    *,
    repetitions: int = ISOLATION_REPETITIONS,
    periods: int = ISOLATION_PERIODS,
    settle_s: float = ISOLATION_SETTLE_S,
    settle_periods: float = ISOLATION_SETTLE_PERIODS,
    period_s: float = ISOLATION_COUNTER_PERIOD_S,
    max_seconds: float = math.inf,
) -> float:
    """Guessed seconds of an isolation pass over ``layers`` leaf layers (plus the whole model and
    an idle block per round, and the counter's characterisation), at most ``max_seconds``.

    One block: :func:`isolation_block_seconds`."""
    block = isolation_block_seconds(periods, settle_s, settle_periods, period_s)
    return min(max_seconds, (layers + 2) * repetitions * block + 6 * period_s)


def model_isolation_seconds(name: str, max_seconds: float) -> float:
    """:func:`isolation_seconds` of a model by name (its leaf layers from ``LEAF_LAYERS``)."""
    return isolation_seconds(LEAF_LAYERS.get(name, _UNKNOWN_LAYERS), max_seconds=max_seconds)


def hms(seconds: float) -> str:
    """``h:mm:ss`` of a duration, rounded up to the second."""
    whole = math.ceil(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
