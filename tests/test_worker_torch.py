"""The torch backend, for real on CPU, through the worker's runner (in process)."""

from __future__ import annotations

import json

import pytest

from jetpower.worker import runner
from jetpower.worker.config import WorkerConfig, WorkerConfigError
from jetpower.worker.progress import Progress
from jetpower.worker.torch_backend import TorchBackend
from tests.worker_helpers import check_layout, windows_ordered

torch = pytest.importorskip("torch")


def _cfg(tmp_path, model, **kw):
    base = {
        "backend": "torch",
        "device": "cpu",
        "dtype": "float32",
        "warmup": 1,
        "runs": 4,
        "profile_runs": 3,
    }
    return WorkerConfig(model=model, result_dir=str(tmp_path), **(base | kw))


@pytest.mark.parametrize("model", ["lenet", "tinycnn"])
def test_files_exact(tmp_path, model):
    """lenet and tinycnn write the original layout exactly, one entry per profiled run and layer."""
    cfg = _cfg(tmp_path, model)
    runner.run(cfg, Progress(None))
    lat = check_layout(cfg.model_dir, model, 4, 3)
    windows_ordered(lat, 3)
    meta = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())
    assert meta["backend"] == "torch" and meta["device"] == "cpu"
    assert set(meta["phases"]) >= {"compile", "warmup", "timing", "profiling"}
    assert meta["phases"]["timing"]["end_ns"] <= meta["phases"]["profiling"]["start_ns"]
    assert meta["alignment"]["expected_error_ns"] >= 0


def test_lenet_layer_info(tmp_path):
    """lenet's layer info lists its 12 leaf modules with conv and pooling parameters."""
    cfg = _cfg(tmp_path, "lenet", profile_runs=1)
    runner.run(cfg, Progress(None))
    info = json.loads((cfg.model_dir / "trt_profiling/trt_engine_info.json").read_text())
    layers = info["Layers"]
    assert len(layers) == 12
    conv = layers[0]
    assert conv["LayerType"] == "Conv2d" and conv["ParameterType"] == "Convolution"
    assert conv["Kernel"] == [3, 3] and conv["Stride"] == [1, 1] and conv["PrePadding"] == [0, 0]
    assert conv["OutMaps"] == 128 and conv["Inputs"][0]["Dimensions"] == [1, 1, 32, 32]
    pool = layers[2]
    assert (
        pool["PoolingType"] == "MAX" and pool["WindowSize"] == [2, 2] and pool["Stride"] == [2, 2]
    )
    assert layers[1]["Inputs"][0]["Name"] == conv["Outputs"][0]["Name"]


def test_shared_module_is_one_layer_per_call(tmp_path):
    """tinycnn's ReLU, called twice per inference, gives two layers: 'act' and 'act#2'."""
    cfg = _cfg(tmp_path, "tinycnn", profile_runs=2)
    runner.run(cfg, Progress(None))
    lat = json.loads((cfg.model_dir / "trt_profiling/trt_layer_latency.json").read_text())
    assert list(lat) == ["conv1", "act", "conv2", "act#2", "pool", "fc"]


def test_timing_pass_has_no_hooks(tmp_path):
    """Hooks exist only during the profiling pass: none before it, none left after it."""
    be = TorchBackend(_cfg(tmp_path, "tinycnn"))
    be.load()
    be.compile()

    def hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in be.model.modules())

    assert hooks() == 0
    runner.run(_cfg(tmp_path, "tinycnn"), Progress(None), backend=be)
    assert hooks() == 0 and be.hooks_installed() == 0


def test_cuda_requested_without_gpu(tmp_path):
    """device 'cuda' on a machine without CUDA is a configuration error."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(WorkerConfigError, match="cuda"):
        TorchBackend(_cfg(tmp_path, "lenet", device="cuda"))


def test_half_on_cpu_runs_or_refuses(tmp_path):
    """float16 on CPU either really runs convolutions or is refused with a clear config error."""
    try:
        be = TorchBackend(_cfg(tmp_path, "tinycnn", dtype="float16"))
    except WorkerConfigError as e:
        assert "float16" in str(e)
        return
    be.load()
    be.compile()
    assert str(be.x.dtype) == "torch.float16"
