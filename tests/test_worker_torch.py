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


def test_cpu_windows_are_measured_with_a_stated_error(tmp_path):
    """On CPU each layer's window is stamped by its hooks: the alignment block names the measured
    method and a calibrated error of a few us, far below the time between layers."""
    cfg = _cfg(tmp_path, "lenet", profile_runs=20)
    runner.run(cfg, Progress(None))
    al = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())["alignment"]
    assert al["method"].startswith("measured (CPU hooks)")
    cal = al["cpu_hook_calibration"]
    assert 0 < cal["start_correction_ns"] < 50_000 and 0 < cal["end_correction_ns"] < 50_000
    assert 0 <= al["expected_error_ns"] <= al["max_error_ns"] < 50_000


def test_cpu_window_ends_are_the_stamped_ends(tmp_path):
    """The written timestamp of a layer is its own stamped end, not start + earlier latencies:
    with a model whose layers are separated by 2 ms of Python, the two differ by that much."""
    from jetpower.worker.profile import LayerProfile

    be = TorchBackend(_cfg(tmp_path, "tinycnn"))
    be.load()
    be.compile()
    names = be.prepare_profiling()
    prof = LayerProfile(names, 3)
    import time as _time

    gap = be.model.conv2.register_forward_pre_hook(lambda m, a: _time.sleep(0.002), prepend=True)
    try:
        for r in range(3):
            be.profile_run(prof, r)
    finally:
        gap.remove()
        be.end_profiling()
    ends = dict(prof.window_ends_ns())
    j = names.index("conv2")
    recon = prof.start_ns[:3] + (prof.lat_ms[:3, : j + 1].sum(axis=1) * 1e6).astype("int64")
    assert ((ends[j] - recon) > 1_900_000).all()
    assert ((prof.end_ns[:3] - ends[len(names) - 1]) >= 0).all()


def test_isolated_pass_on_a_simulated_counter(tmp_path):
    """layer_energy "isolated" with the simulated counter writes jetpower_layer_energy.json: one
    row per profiled layer, in order, with intervals, labelled simulated, readable by the report's
    loader; the worker's files and phases list it."""
    from jetpower.report.isolated import load_isolated, rows

    cfg = _cfg(
        tmp_path,
        "tinycnn",
        layer_energy="isolated",
        layer_energy_counter="simulated",
        layer_energy_precision=0.5,
        layer_energy_max_seconds=4.0,
    )
    runner.run(cfg, Progress(None))
    doc = json.loads((cfg.model_dir / "jetpower_layer_energy.json").read_text())
    assert doc["format"] == "jetpower.layer-energy" and doc["version"] == 1
    assert doc["method"] == "isolated" and doc["simulated"] is True
    lat = json.loads((cfg.model_dir / "trt_profiling/trt_layer_latency.json").read_text())
    assert [r["layer"] for r in doc["layers"]] == list(lat)
    assert all(r["repetitions"] >= 2 and r["energy_ci_uj"] is not None for r in doc["layers"])
    assert doc["check"]["ratio"] is not None and doc["whole"]["layer"] == "<whole model>"
    meta = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())
    assert "jetpower_layer_energy.json" in meta["files"] and "layer_energy" in meta["phases"]
    iso = load_isolated(cfg.model_dir)
    assert iso is not None and iso.simulated and len(iso.rows) == len(lat)
    table = rows(cfg.model_dir)
    assert set(table[0]) == {"layer", "energy_uj", "energy_ci_uj", "method"}
    assert table[0]["method"] == "isolated (simulated)"


def test_isolated_on_cpu_needs_a_counter(tmp_path):
    """Asking for isolated energy on CPU without the simulated counter is a config error, raised
    before anything runs, that says what would work."""
    with pytest.raises(WorkerConfigError, match="simulated"):
        TorchBackend(_cfg(tmp_path, "tinycnn", layer_energy="isolated"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"layer_energy": "yes"}, "layer_energy"),
        ({"layer_energy": "isolated", "backend": "tensorrt"}, "needs backend 'torch'"),
        ({"layer_energy_precision": 0}, "layer_energy_precision"),
        ({"layer_energy_max_seconds": -1}, "layer_energy_max_seconds"),
        ({"layer_energy_counter": "rapl"}, "layer_energy_counter"),
    ],
)
def test_layer_energy_config_is_checked(tmp_path, kw, match):
    """Bad layer_energy settings are refused with the key named."""
    with pytest.raises(WorkerConfigError, match=match):
        _cfg(tmp_path, "tinycnn", **kw)
