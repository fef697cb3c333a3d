"""The worker's result files, each written to a temporary name and renamed into place.

The original layout (kept exactly)::

    <result_dir>/<model>/<model>_tensorrt.json
    <result_dir>/<model>/trt_profiling/trt_engine_info.json
    <result_dir>/<model>/trt_profiling/trt_layer_latency.json

and jetpower's own ``jetpower_worker.json`` (format "jetpower.worker-result", version 1),
``jetpower_layer_energy.json`` when the isolation pass ran (format "jetpower.layer-energy"), and, on
failure, ``jetpower_failure.json`` (format "jetpower.worker-failure", version 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jetpower._fs import atomic_text
from jetpower.timebase import STAMP_FMT, Anchor, monotonic_ns, wall_text
from jetpower.worker.config import WorkerConfig

RESULT_FORMAT = "jetpower.worker-result"
FAILURE_FORMAT = "jetpower.worker-failure"
VERSION = 1

PROFILING_DIR = "trt_profiling"
ENGINE_INFO = "trt_engine_info.json"
LAYER_LATENCY = "trt_layer_latency.json"
WORKER_META = "jetpower_worker.json"
#: the isolation pass's per-layer energies (format "jetpower.layer-energy", worker/isolate.py)
LAYER_ENERGY = "jetpower_layer_energy.json"
FAILURE = "jetpower_failure.json"


def summary_name(cfg: WorkerConfig) -> str:
    return f"{cfg.model_dir.name}_tensorrt.json"


def write_json(path: Path, obj: Any) -> Path:
    with atomic_text(path) as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
    return path


def write_stream(path: Path, writer: Callable[[IO[str]], None]) -> Path:
    with atomic_text(path) as fh:
        writer(fh)
    return path


def original_config(cfg: WorkerConfig, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The ``config`` block of ``<model>_tensorrt.json``, keys in the original order."""
    return {
        "model": cfg.model,
        "dtype": cfg.dtype,
        "input_shape": list(input_shape),
        "warmup": cfg.warmup,
        "runs": cfg.runs,
        "optimization_level": cfg.optimization_level,
        "min_block_size": cfg.min_block_size,
        "result_dir": cfg.result_dir,
    }


def summary(
    cfg: WorkerConfig,
    input_shape: tuple[int, ...],
    latencies_s: list[float],
    total_time_s: float,
    anchor: Anchor,
) -> dict[str, Any]:
    """``<model>_tensorrt.json``, keys in the original order (config ... avg_throughput)."""
    avg = sum(latencies_s) / len(latencies_s)
    return {
        "config": original_config(cfg, input_shape),
        "total_time": total_time_s,
        "timestamp": wall_text(monotonic_ns(), anchor, STAMP_FMT),
        "latencies": latencies_s,
        "avg_latency": avg,
        "avg_throughput": input_shape[0] / avg if avg > 0 else None,
    }


def failure(error_type: str, message: str, exit_code: int, phase: str | None) -> dict[str, Any]:
    return {
        "format": FAILURE_FORMAT,
        "version": VERSION,
        "error_type": error_type,
        "message": message,
        "exit_code": exit_code,
        "phase": phase,
        "t_ns": monotonic_ns(),
    }


def remove_stale(model_dir: Path) -> None:
    """Remove a previous attempt's failure file, so a success is not shadowed by an old failure."""
    (model_dir / FAILURE).unlink(missing_ok=True)
