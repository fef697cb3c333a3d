"""On an NVIDIA GPU (marked ``gpu``; each test skips itself where CUDA or NVML is missing).

What only a GPU shows: the torch backend on CUDA writes the same files as on CPU, its layer
windows are placed on CLOCK_MONOTONIC by anchored CUDA events with a measured error of about
10 us, and NVML is discovered with its power and energy-counter channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jetpower.worker import runner
from jetpower.worker.config import WorkerConfig
from jetpower.worker.progress import Progress
from tests.worker_helpers import check_layout, windows_ordered

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _cfg(tmp_path: Path, model: str, **kw: object) -> WorkerConfig:
    base: dict[str, object] = {"backend": "torch", "device": "cuda", "dtype": "float16",
                               "warmup": 20, "runs": 200, "profile_runs": 100}
    return WorkerConfig(model=model, result_dir=str(tmp_path), **(base | kw))  # type: ignore[arg-type]


@cuda
@pytest.mark.parametrize("model", ["lenet", "tinycnn"])
def test_cuda_worker_files_and_windows(tmp_path: Path, model: str) -> None:
    """A CUDA worker writes the layout the CPU one does, with windows in order."""
    cfg = _cfg(tmp_path, model)
    runner.run(cfg, Progress(None))
    lat = check_layout(cfg.model_dir, model, cfg.runs, cfg.profile_runs)
    windows_ordered(lat, cfg.profile_runs)


@cuda
def test_cuda_windows_are_anchored_to_about_10_us(tmp_path: Path) -> None:
    """Layer windows come from events placed through an anchor bracketed by host stamps: the
    stated error (the anchor's half width) is tens of microseconds at most, median ~10 us."""
    cfg = _cfg(tmp_path, "lenet", profile_runs=300)
    runner.run(cfg, Progress(None))
    al = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())["alignment"]
    assert "CUDA" in al["method"] or "cuda" in al["method"]
    assert 0 < al["expected_error_ns"] < 30_000, al
    assert al["max_error_ns"] < 1_000_000, al


def test_nvml_discovered_with_power_and_counter() -> None:
    """Where an NVIDIA driver is present, discovery finds NVML with at least one power channel."""
    from jetpower.errors import SensorError
    from jetpower.sensors.discover import discover

    try:
        found = discover(Path("/"), "nvml")
    except SensorError as e:
        pytest.skip(f"no NVML here: {e}")
    assert found.source == "nvml"
    assert found.rails, found
