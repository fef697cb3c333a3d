"""Shared checks of the original result layout, for the worker tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

FAKES = Path(__file__).parent / "fakes"
SUMMARY_KEYS = ["config", "total_time", "timestamp", "latencies", "avg_latency", "avg_throughput"]
CONFIG_KEYS = [
    "model",
    "dtype",
    "input_shape",
    "warmup",
    "runs",
    "optimization_level",
    "min_block_size",
    "result_dir",
]


def check_layout(
    mdir: Path, model: str, runs: int, profile_runs: int, positive: bool = True
) -> dict:
    """Assert the original files' exact shape; return the parsed layer latency file.

    ``positive``: every layer latency > 0 (TensorRT reports 0.0 for NoOp layers: then >= 0).
    """
    s = json.loads((mdir / f"{model}_tensorrt.json").read_text())
    assert list(s) == SUMMARY_KEYS
    assert list(s["config"]) == CONFIG_KEYS
    dt.datetime.strptime(s["timestamp"], "%Y%m%d-%H%M%S")
    assert len(s["latencies"]) == runs and all(x > 0 for x in s["latencies"])
    assert abs(s["avg_latency"] - sum(s["latencies"]) / runs) < 1e-12
    batch = s["config"]["input_shape"][0]
    assert abs(s["avg_throughput"] - batch / s["avg_latency"]) < 1e-6
    info = json.loads((mdir / "trt_profiling" / "trt_engine_info.json").read_text())
    assert set(info) == {"Layers", "Bindings"}
    lat = json.loads((mdir / "trt_profiling" / "trt_layer_latency.json").read_text())
    assert list(lat) == [layer["Name"] for layer in info["Layers"]]
    for entries in lat.values():
        assert len(entries) == profile_runs
        for ms, stamp in entries:
            assert isinstance(ms, float) and (ms > 0 if positive else ms >= 0)
            dt.datetime.strptime(stamp, "%Y%m%d-%H:%M:%S.%f")
    meta = json.loads((mdir / "jetpower_worker.json").read_text())
    assert meta["format"] == "jetpower.worker-result" and meta["version"] == 1
    return lat


def windows_ordered(lat: dict, profile_runs: int) -> None:
    """Within each run, window ends follow execution order (ties allowed at us resolution)."""
    names = list(lat)
    for r in range(profile_runs):
        stamps = [dt.datetime.strptime(lat[n][r][1], "%Y%m%d-%H:%M:%S.%f") for n in names]
        assert stamps == sorted(stamps)
        if r:
            prev_last = dt.datetime.strptime(lat[names[-1]][r - 1][1], "%Y%m%d-%H:%M:%S.%f")
            assert stamps[0] >= prev_last
