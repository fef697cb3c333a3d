"""The tensorrt backend's logic, through the TensorRT stand-in in tests/fakes (in process)."""

from __future__ import annotations

import json
import sys

import pytest

from jetpower.worker import runner
from jetpower.worker.config import WorkerConfig
from jetpower.worker.profile import LayerProfile
from jetpower.worker.progress import Progress
from tests.worker_helpers import FAKES, check_layout, windows_ordered

torch = pytest.importorskip("torch")


@pytest.fixture
def fakes(monkeypatch):
    """Put the stand-ins first on sys.path, fresh for each test."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in list(sys.modules):
        if name.split(".")[0] in {"tensorrt", "torch_tensorrt"}:
            monkeypatch.delitem(sys.modules, name)
    import tensorrt
    import torch_tensorrt

    assert tensorrt.JETPOWER_STAND_IN
    return tensorrt, torch_tensorrt


def _cfg(tmp_path, **kw):
    base = {
        "model": "tinycnn",
        "backend": "tensorrt",
        "dtype": "float32",
        "warmup": 2,
        "runs": 5,
        "profile_runs": 4,
        "optimization_level": 4,
        "min_block_size": 3,
    }
    return WorkerConfig(result_dir=str(tmp_path), **(base | kw))


def test_layout_and_all_engines(tmp_path, fakes):
    """Both engines are profiled: every layer of both appears, in execution order, once per run."""
    cfg = _cfg(tmp_path)
    runner.run(cfg, Progress(None))
    lat = check_layout(cfg.model_dir, "tinycnn", 5, 4, positive=False)
    windows_ordered(lat, 4)
    assert len(lat) == 9  # 5 layers + 4 layers
    assert list(lat)[5] == "[REDUCE]-[aten_ops.mean.dim]-[/avgpool/mean]"
    info = json.loads((cfg.model_dir / "trt_profiling/trt_engine_info.json").read_text())
    assert info["Bindings"] == [
        "x",
        "(Unnamed Layer* 9) [ElementWise]_output",
        "flatten_input",
        "output0",
    ]
    assert info["Layers"][1]["Kernel"] == [7, 7]
    meta = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())
    assert [e["module"] for e in meta["profiling"]["engines"]] == ["_run_on_acc_0", "_run_on_acc_2"]
    assert (
        meta["profiling"]["missing_reports"] == 0 and "concatenated" in meta["profiling"]["merge"]
    )


def test_async_profiling_api(tmp_path, fakes):
    """Profiling keeps enqueue asynchronous and reports after each run, on every engine."""
    trt, _ = fakes
    trt.CONTEXTS.clear()
    seen_flags = []
    orig = trt.IExecutionContext.execute_async_v3

    def spy(self, stream):
        seen_flags.append((self.profiler is not None, self.enqueue_emits_profile))
        return orig(self, stream)

    trt.IExecutionContext.execute_async_v3 = spy
    try:
        runner.run(_cfg(tmp_path), Progress(None))
    finally:
        trt.IExecutionContext.execute_async_v3 = orig
    assert len(trt.CONTEXTS) == 2
    for ctx in trt.CONTEXTS:
        assert ctx.reports == 4 + 1  # one discovery run + profile_runs
        assert ctx.profiler is None and ctx.enqueue_emits_profile  # restored afterwards
    assert all(not emits for has_profiler, emits in seen_flags if has_profiler)
    assert sum(1 for has_profiler, _ in seen_flags if has_profiler) == 2 * (4 + 1)


def test_compile_kwargs(tmp_path, fakes):
    """compile gets the configured precision, level, block size, Python runtime and detail."""
    _, ttrt = fakes
    ttrt.dynamo.CALLS.clear()
    runner.run(_cfg(tmp_path, profile_runs=1), Progress(None))
    (kw,) = ttrt.dynamo.CALLS
    assert kw["enabled_precisions"] == {torch.float32}
    assert kw["optimization_level"] == 4 and kw["min_block_size"] == 3
    assert kw["use_python_runtime"] is True and kw["debug"] is True


def test_windows_do_not_overlap(tmp_path, fakes):
    """Reconstructed windows tile each run: layer k starts where k-1 ends, inside the run."""
    from jetpower.worker.trt_backend import TrtBackend

    be = TrtBackend(_cfg(tmp_path))
    be.load()
    be.compile()
    names = be.prepare_profiling()
    prof = LayerProfile(names, 3)
    for r in range(3):
        be.profile_run(prof, r)
    be.end_profiling()
    ends = [e for _, e in prof.window_ends_ns()]
    for r in range(3):
        col = [int(e[r]) for e in ends]
        assert prof.start_ns[r] < col[0] and col == sorted(col)
        assert col[-1] <= prof.end_ns[r]  # the stand-in spins for the layers' total time
        if r:
            assert prof.end_ns[r - 1] <= prof.start_ns[r]


def test_duplicate_names_across_engines(tmp_path, fakes, monkeypatch):
    """A layer name used by two engines is suffixed in both files, keeping keys unique and equal."""
    src = json.loads((FAKES.parent / "fixtures/trt/resnet18_two_engines.json").read_text())
    first = src["engines"][0]["info"]["Layers"][0]["Name"]
    second = src["engines"][1]["info"]["Layers"][0]["Name"]
    src["engines"][1]["info"]["Layers"][0]["Name"] = first
    src["engines"][1]["latency_ms"][first] = src["engines"][1]["latency_ms"].pop(second)
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(src))
    monkeypatch.setenv("JETPOWER_FAKE_TRT_FIXTURE", str(path))
    cfg = _cfg(tmp_path / "r", profile_runs=2)
    runner.run(cfg, Progress(None))
    lat = check_layout(cfg.model_dir, "tinycnn", 5, 2, positive=False)
    assert f"{first} [engine 1]" in lat and first in lat
