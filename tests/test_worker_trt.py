"""The tensorrt backend's logic against the stand-in of each torch-tensorrt generation (in process).

Each test runs once per release in ``tests/fakes/jp_releases.py``: the stand-in exposes what that
release exposes, lacks what it lacks, and treats compile arguments as its source does.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from jetpower.timebase import parse_wall_text
from jetpower.worker import _trt_compat as compat
from jetpower.worker import runner
from jetpower.worker.config import WorkerConfig, WorkerConfigError, WorkerRunError
from jetpower.worker.progress import Progress
from tests.fakes.jp_releases import RELEASES, apply
from tests.worker_helpers import FAKES, check_layout, windows_ordered

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _load(release, monkeypatch):
    """Put the stand-ins first on sys.path, playing ``release``, freshly imported."""
    apply(release, monkeypatch)
    monkeypatch.syspath_prepend(str(FAKES))
    for name in list(sys.modules):
        if name.split(".")[0] in {"tensorrt", "torch_tensorrt"}:
            monkeypatch.delitem(sys.modules, name)
    import tensorrt
    import torch_tensorrt

    assert tensorrt.JETPOWER_STAND_IN
    return SimpleNamespace(trt=tensorrt, ttrt=torch_tensorrt, release=release)


@pytest.fixture(params=list(RELEASES))
def fakes(request, monkeypatch):
    return _load(request.param, monkeypatch)


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


def _meta(cfg):
    return json.loads((cfg.model_dir / "jetpower_worker.json").read_text())


def test_layout_and_all_engines(tmp_path, fakes, capsys):
    """Both engines are profiled: every layer of both, in execution order, once per run; the
    engine info is DETAILED (layer parameters present); nothing is printed on stdout."""
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
    assert all(isinstance(layer, dict) for layer in info["Layers"])
    assert info["Layers"][1]["Kernel"] == [7, 7]
    meta = _meta(cfg)
    assert [e["module"] for e in meta["profiling"]["engines"]] == ["_run_on_acc_0", "_run_on_acc_2"]
    assert meta["profiling"]["missing_reports"] == 0
    assert "concatenated" in meta["profiling"]["merge"]
    assert meta["torch_tensorrt_generation"]["name"] == compat.detect(fakes.ttrt).name
    via = {e["context"] for e in meta["profiling"]["engines"]}
    if fakes.release.startswith("2.13.0-python"):
        assert via == {"TorchTensorRTModule.engine (Python TRTEngine).context"}
    elif fakes.release.startswith(("2.13", "2.14")):
        assert via == {"Python TRTEngine twin of the C++ engine (profiling pass only).context"}
    else:
        assert via == {"PythonTorchTensorRTModule.context"}
    assert capsys.readouterr().out == ""


def test_async_profiling_api(tmp_path, fakes, capsys):
    """A profiler runs only in the profiling pass, with enqueue_emits_profile=False and one
    report_to_profiler() per run on every engine; no other profiler (TensorRT's stdout one,
    which 2.8-2.11 attach when asked for detail) ever runs; all is restored afterwards."""
    trt = fakes.trt
    trt.CONTEXTS.clear()
    runner.run(_cfg(tmp_path), Progress(None))
    profiled = [c for c in trt.CONTEXTS if any(p for p, _, _ in c.log)]
    assert len(profiled) == 2
    for ctx in profiled:
        assert ctx.reports == 4 + 1  # one discovery run + profile_runs
        assert [(p, e) for p, e, _ in ctx.log[-5:]] == [("LayerSink", False)] * 5
        assert ctx.profiler is None and ctx.enqueue_emits_profile  # restored afterwards
    ran = [entry for c in trt.CONTEXTS for entry in c.log]
    assert {p for p, _, _ in ran} <= {None, "LayerSink"}
    timing_runs = sum(1 for p, _, _ in ran if p is None)
    assert timing_runs >= 2 * (2 + 5)  # warm-up and timing ran without a profiler
    assert capsys.readouterr().out == ""


#: what each release's compile call must look like (from its source, independent of jetpower's
#: table): (debug=True passed, enabled_precisions passed, use_python_runtime passed,
#: Debugger open, save_engine_profile)
EXPECTED_CALL = {
    "2.3.0a0-igpu": (True, True, True, False, None),
    "2.4.0": (True, True, True, False, None),
    "2.6.1": (True, True, True, False, None),
    "2.9.0": (False, True, True, True, True),
    "2.11.0": (False, False, True, True, True),
    "2.12.1": (False, False, True, True, False),
    "2.13.0": (False, False, False, True, False),
    "2.13.0-python-only": (False, False, False, True, False),
    "2.14.0a0": (False, False, False, True, False),
}


def test_compile_call_per_release(tmp_path, fakes):
    """compile gets the level, block size and each release's own way to precision, the Python
    runtime and DETAILED verbosity, and raises no deprecation warning."""
    ttrt = fakes.ttrt
    ttrt.dynamo.CALLS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        runner.run(_cfg(tmp_path, profile_runs=1), Progress(None))
    (kw,) = ttrt.dynamo.CALLS
    assert kw["optimization_level"] == 4 and kw["min_block_size"] == 3
    debug, prec, pyrt, debugger, engine_profile = EXPECTED_CALL[fakes.release]
    assert (kw.get("debug") is True) == debug
    assert ("enabled_precisions" in kw) == prec
    if prec:
        assert kw["enabled_precisions"] == {torch.float32}
    assert (kw.get("use_python_runtime") is True) == pyrt
    assert bool(kw["debugger"]) == debugger
    if debugger:
        (cfg,) = kw["debugger"]
        assert cfg.save_engine_profile == engine_profile
        assert cfg.engine_builder_monitor is False


def test_float16_precision(tmp_path, fakes):
    """float16 compiles on every release: enabled_precisions where it is accepted, the model's
    dtype where strong typing rejects it (2.10-2.12) or it is gone (2.13+)."""
    ttrt = fakes.ttrt
    ttrt.dynamo.CALLS.clear()
    runner.run(_cfg(tmp_path, dtype="float16", profile_runs=1), Progress(None))
    (kw,) = ttrt.dynamo.CALLS
    assert kw.get("enabled_precisions", {torch.float16}) == {torch.float16}


def test_windows_against_truth(tmp_path, fakes):
    """Reconstructed windows follow execution order inside each run; on the stand-in's device
    the truth does not tile (launch latency, enqueue cost, gaps), the windows sit early, and the
    error stated in jetpower_worker.json equals an independent computation from the truth."""
    trt = fakes.trt
    trt.CONTEXTS.clear()
    cfg = _cfg(tmp_path, profile_runs=20)
    runner.run(cfg, Progress(None))
    lat = check_layout(cfg.model_dir, "tinycnn", 5, 20, positive=False)
    windows_ordered(lat, 20)
    meta = _meta(cfg)
    anchor = meta["anchor"]
    profiled = [c for c in trt.CONTEXTS if any(p for p, _, _ in c.log)]
    runs = [c.log[-20:] for c in profiled]  # per engine: (profiler, emits, truth) per run
    true_end = {name: [0] * 20 for name in lat}
    for engine_runs in runs:
        for r, (_, _, layers) in enumerate(engine_runs):
            for name, _t0, t1 in layers:
                true_end[name][r] = t1
    errs = np.array(
        [
            parse_wall_text(stamp) * 1e9 - anchor["realtime_ns"] + anchor["monotonic_ns"]
            - true_end[name][r]
            for name, entries in lat.items()
            for r, (_ms, stamp) in enumerate(entries)
        ]
    )
    assert np.median(errs) < 0  # the run starts before the first kernel: windows sit early
    gaps = [
        layers[j + 1][1] - layers[j][2]
        for engine_runs in runs
        for _, _, layers in engine_runs
        for j in range(len(layers) - 1)
    ]
    assert min(gaps) > 0  # the true windows do not tile
    stated = meta["alignment"]["stand_in_error"]["end"]
    # the file's stamps are truncated to whole microseconds
    assert abs(np.median(np.abs(errs)) - stated["median_abs_ns"]) < 2000
    assert abs(np.max(np.abs(errs)) - stated["max_abs_ns"]) < 2000
    assert stated["median_abs_ns"] > 1000  # not a tiling truth: the method has an error


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


def test_sink_exception_fails_the_pass(tmp_path, fakes, monkeypatch, capsys):
    """An exception in the layer sink is swallowed by TensorRT (as pyCore.cpp does: '[ERROR]
    Exception caught in report_layer_time()' on stderr); the lost report fails the pass."""
    from jetpower.worker.profile import LayerProfile

    orig = LayerProfile.record

    def record(self, run, layer, ms):
        if run == 2 and layer == 6:
            raise ValueError("deliberate sink failure")
        orig(self, run, layer, ms)

    monkeypatch.setattr(LayerProfile, "record", record)
    with pytest.raises(WorkerRunError, match=r"profiling run 2 lost layer reports") as ei:
        runner.run(_cfg(tmp_path), Progress(None))
    assert "_run_on_acc_2 filed 3 of its 4 layers" in str(ei.value)
    assert "swallows" in str(ei.value)
    err = capsys.readouterr().err
    assert "[ERROR] Exception caught in report_layer_time(): deliberate sink failure" in err


def test_missing_layer_report_fails_the_pass(tmp_path, fakes, monkeypatch):
    """A run in which TensorRT reports fewer layers than the engine has fails the pass."""
    trt = fakes.trt
    orig = trt.IExecutionContext.report_to_profiler
    calls = {"n": 0}

    def report(self):
        calls["n"] += 1
        if calls["n"] == 5 and self._pending:  # the second engine, second profiling run
            self._pending = self._pending[1:]
        return orig(self)

    monkeypatch.setattr(trt.IExecutionContext, "report_to_profiler", report)
    with pytest.raises(WorkerRunError, match=r"TensorRT reported fewer layers"):
        runner.run(_cfg(tmp_path), Progress(None))


@pytest.mark.parametrize(
    ("version", "detail"),
    [("2.2.0", "2.2.0"), ("2.3.0", "2.3.0"), ("2.15.0", "2.15.0"), ("3.0.1+cu130", "3.0.1")],
)
def test_version_outside_range_is_a_config_error(tmp_path, monkeypatch, version, detail):
    """A torch-tensorrt outside the tested range is refused before anything runs, naming the
    installed version and the range."""
    from jetpower.worker.trt_backend import TrtBackend

    fk = _load("2.4.0", monkeypatch)
    monkeypatch.setattr(fk.ttrt, "__version__", version)
    with pytest.raises(WorkerConfigError, match=r"outside the tested range 2\.4-2\.14") as ei:
        TrtBackend(_cfg(tmp_path))
    assert detail in str(ei.value)


@pytest.mark.parametrize(
    ("release", "wrong", "expect"),
    [
        ("2.9.0", "2.4", "layer names only"),  # debug= on 2.8+: only warns, LAYER_NAMES_ONLY
        ("2.9.0", "2.12", "layer names only"),  # plain Debugger() before 2.12
        # enabled_precisions={float16} under strong typing (float32 alone is accepted)
        ("2.11.0", "2.8-2.9", "use_explicit_typing"),
        ("2.4.0", "2.8-2.9", "no torch_tensorrt.dynamo.Debugger"),
        ("2.13.0", "2.12", "PythonTorchTensorRTModule"),  # removed in 2.13
        ("2.12.1", "2.13-2.14", "_TRTEngine"),  # no Python TRTEngine before 2.13
        ("2.3.0a0-igpu", "2.12", "Debugger"),
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_wrong_generation_calls_fail(tmp_path, monkeypatch, release, wrong, expect):
    """Driving a release with another generation's calls fails against its stand-in: the
    stand-ins tell the generations apart."""
    fk = _load(release, monkeypatch)
    row = next(g for g in compat.GENERATIONS if g.name == wrong)
    right = compat.detect(fk.ttrt)
    forced = dataclasses.replace(row, first=right.first, last=right.last,
                                 prerelease_only=False)
    monkeypatch.setattr(compat, "detect", lambda _ttrt: forced)
    with pytest.raises((WorkerRunError, WorkerConfigError), match=expect):
        runner.run(_cfg(tmp_path, profile_runs=1, dtype="float16"), Progress(None))


def test_undo_of_compile_profiling_is_needed(tmp_path, monkeypatch, capsys):
    """2.8-2.11: without disable_profiling() after compile, TensorRT's default profiler (attached
    by compile for save_engine_profile) would print every layer on stdout in the timing pass."""
    _load("2.9.0", monkeypatch)
    monkeypatch.setattr(compat, "after_compile", lambda gen, modules: None)
    runner.run(_cfg(tmp_path, profile_runs=1), Progress(None))
    out = capsys.readouterr().out
    assert "[CONVOLUTION]" in out and "ms" in out


def test_igpu_snapshot_needs_tensorrt_8(tmp_path, monkeypatch):
    """The NGC iGPU snapshot (2.3.0a0) asks for ProfilingVerbosity.VERBOSE, which TensorRT 10
    lacks: against TensorRT 10 its compile fails, and jetpower says so as a compile failure."""
    _load("2.3.0a0-igpu", monkeypatch)
    monkeypatch.setenv("JETPOWER_FAKE_TRT_VERSION", "10.1.0")
    for name in list(sys.modules):
        if name.split(".")[0] in {"tensorrt", "torch_tensorrt"}:
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(WorkerRunError, match="VERBOSE"):
        runner.run(_cfg(tmp_path, profile_runs=1), Progress(None))
