"""The ``tensorrt`` backend: torch-tensorrt (dynamo) compile, per-layer latency from TensorRT.

The calls that differ between torch-tensorrt releases (2.4 to 2.14) are in :mod:`._trt_compat`,
one row per generation, each checked against that release's source.  What stays the same:

- ``torch.export.export(model, (x,))``, then ``torch_tensorrt.dynamo.compile(ep, inputs=[x],
  optimization_level=, min_block_size=, ...)`` with the generation's way to DETAILED profiling
  verbosity (layer parameters in the engine info) and its precision argument.  jetpower refuses an
  engine info without layer parameters rather than write a dataset without its features.
- Every engine of the compiled module is profiled, in execution order.  Its execution context is
  the Python runtime module's ``.context`` (2.4-2.12: ``PythonTorchTensorRTModule``, whose
  ICudaEngine is ``.engine``: no release 2.4-2.12 has ``.cuda_engine``), or, from 2.13, that of
  torch-tensorrt's Python ``TRTEngine`` behind ``TorchTensorRTModule``.
- ``context.profiler = <trt.IProfiler subclass>``, ``context.enqueue_emits_profile = False``, and
  after the stream completed ``context.report_to_profiler()``: enqueue stays asynchronous.
- TensorRT swallows an exception raised in ``IProfiler.report_layer_time`` (it prints "[ERROR]
  Exception caught in report_layer_time()" and goes on: NVIDIA/TensorRT
  python/src/infer/pyCore.cpp, PyProfiler).  So each engine's reports are counted per run: a
  run in which any engine did not file exactly its layers fails the profiling pass, with the
  counts in the message.
- The engine info comes from the runtime module's ``get_layer_info()`` (the inspector's JSON).

Several engines are merged into one ``trt_engine_info.json``: ``Layers`` concatenated in engine
execution order, ``Bindings`` concatenated in the same order; a layer name already used by an
earlier engine gets the suffix `` [engine N]`` in both result files.

Without CUDA the backend runs only against the test stand-in (``tensorrt.JETPOWER_STAND_IN``),
whose device is a simulated timeline: then the reconstructed layer windows are also compared with
the stand-in's true ones and the error is stated in the result metadata.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from typing import Any, Protocol

import numpy as np

from jetpower.timebase import monotonic_ns
from jetpower.worker import _trt_compat as compat
from jetpower.worker import models
from jetpower.worker.config import WorkerConfig, WorkerConfigError, WorkerRunError
from jetpower.worker.profile import LayerProfile
from jetpower.worker.torch_backend import import_torch, torch_dtype

MERGE_RULE = (
    "Layers concatenated in engine execution order; Bindings concatenated in the same order; a "
    "layer name already used by an earlier engine gets the suffix ' [engine N]' in both files"
)
ALIGNMENT = (
    "reconstructed: run start (CLOCK_MONOTONIC just before the forward call) + TensorRT "
    "IProfiler latencies of the layers before it (engines in execution order); timestamp = end "
    "of the layer's window. Reported with enqueue_emits_profile=False and report_to_profiler() "
    "after the stream completed; launch latency, gaps between kernels and PyTorch fallback ops "
    "between engines are in no window, so windows sit early by up to their sum"
)


class StreamSync(Protocol):
    """Where inferences run and how to wait for them."""

    def context(self) -> Any: ...
    def synchronize(self) -> None: ...


class CudaSync:
    """A non-default CUDA stream."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.stream = torch.cuda.Stream()

    def context(self) -> Any:
        return self.torch.cuda.stream(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()


class StandInSync:
    """No device: the stand-in's simulated stream, waited for through its own hook."""

    def __init__(self, trt: Any) -> None:
        self._wait = getattr(trt, "stand_in_synchronize", None)

    def context(self) -> Any:
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        if self._wait is not None:
            self._wait()


def _import_trt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
        import torch_tensorrt
    except ImportError as e:
        raise WorkerConfigError(
            f"the tensorrt backend needs torch-tensorrt and tensorrt ({e}): "
            "pip install 'jetpower[tensorrt]' (on a Jetson, use NVIDIA's container or wheels)"
        ) from e
    return trt, torch_tensorrt


def _sink_class(trt: Any) -> Any:
    class LayerSink(trt.IProfiler):
        """Receives one engine's ``report_layer_time`` calls and files them in the profile.

        ``calls`` counts entries (before anything can fail) and ``filed`` successful filings, per
        run: TensorRT swallows what this method raises, so the counts are the only witness.
        """

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.index: dict[str, int] | None = None  # None: discovery (record names in order)
            self.seen: list[str] = []
            self.prof: LayerProfile | None = None
            self.run = 0
            self.calls = 0
            self.filed = 0
            self.unknown: list[str] = []

        def reset(self, prof: LayerProfile | None, run: int) -> None:
            self.prof, self.run = prof, run
            self.calls = self.filed = 0
            self.unknown = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.calls += 1
            if self.index is None:
                self.seen.append(layer_name)
            elif self.prof is not None:
                i = self.index.get(layer_name)
                if i is None:
                    self.prof.unknown_reports += 1
                    self.unknown.append(layer_name)
                    return
                self.prof.record(self.run, i, ms)
            self.filed += 1

    return LayerSink


class TrtBackend:
    """torch-tensorrt, see the module docstring."""

    name = "tensorrt"

    def __init__(self, cfg: WorkerConfig, sync: StreamSync | None = None) -> None:
        self.cfg = cfg
        self.torch = torch = import_torch()
        self.trt, self.ttrt = _import_trt()
        self.gen = compat.detect(self.ttrt)
        if cfg.device == "cpu":
            raise WorkerConfigError("the tensorrt backend runs on CUDA only; use backend 'torch'")
        self.stand_in = bool(getattr(self.trt, "JETPOWER_STAND_IN", False))
        if sync is None:
            if torch.cuda.is_available():
                sync = CudaSync(torch)
            elif self.stand_in:
                sync = StandInSync(self.trt)
            else:
                raise WorkerConfigError("the tensorrt backend needs a CUDA device; none is visible")
        self.sync = sync
        self.device = "cuda" if isinstance(sync, CudaSync) else "stand-in"
        bf16_ok = not isinstance(sync, CudaSync) or torch.cuda.is_bf16_supported()
        if cfg.dtype == "bfloat16" and not bf16_ok:
            raise WorkerConfigError("dtype 'bfloat16' is not supported by this GPU")
        self.dtype = torch_dtype(torch, cfg.dtype)
        self.input_shape = cfg.input_shape or models.default_input_shape(cfg.model)
        self.dev = "cuda" if isinstance(sync, CudaSync) else "cpu"
        self.compiled: Any = None
        self.modules: list[tuple[str, Any]] = []  # engine submodules, module order
        self.engines: list[compat.EngineAccess] = []  # execution order, while profiling
        self.sinks: list[Any] = []
        self._info: dict[str, Any] = {"Layers": [], "Bindings": []}
        self._engine_notes: list[dict[str, Any]] = []
        self._prof: LayerProfile | None = None
        self._truth_end: Any = None  # stand-in only: true window ends, runs x layers
        self._truth_start: Any = None
        torch.set_grad_enabled(False)

    def load(self) -> None:
        model = models.build(self.cfg.model, self.cfg.weights)
        self.model = model.to(device=self.dev, dtype=self.dtype)
        self.x = self.torch.randn(*self.input_shape, device=self.dev, dtype=self.dtype)

    def compile(self) -> None:
        torch, gen = self.torch, self.gen
        dyn = compat.need(self.ttrt, "dynamo", gen)
        try:
            ep = torch.export.export(self.model, (self.x,))
        except Exception as e:
            raise WorkerRunError(f"torch.export of {self.cfg.model!r} failed: {e}") from e
        base = {
            "inputs": [self.x],
            "optimization_level": self.cfg.optimization_level,
            "min_block_size": self.cfg.min_block_size,
        }
        kw = compat.compile_kwargs(gen, base, self.dtype)
        restore = compat.restore_log_level(gen)
        with tempfile.TemporaryDirectory(prefix="jetpower-ttrt-") as logdir:
            try:
                with compat.detail_context(gen, dyn, logdir):
                    self.compiled = compat.need(dyn, "compile", gen)(ep, **kw)
            except WorkerConfigError:
                raise
            except Exception as e:
                raise WorkerRunError(
                    f"torch-tensorrt {gen.name} compile of {self.cfg.model!r} failed: {e}"
                ) from e
            finally:
                restore()
        self.modules = compat.engine_modules(gen, self.ttrt, self.compiled)
        if not self.modules:
            raise WorkerRunError(
                "the compiled module holds no TensorRT engine (everything fell back to PyTorch; "
                f"min_block_size={self.cfg.min_block_size} may be too large)"
            )
        compat.after_compile(gen, self.modules)

    def infer(self) -> None:
        with self.sync.context():
            self.compiled(self.x)
        self.sync.synchronize()

    # -- profiling ----------------------------------------------------------------------------

    def prepare_profiling(self) -> list[str]:
        """Attach a profiler to every engine, learn their execution order and layer names."""
        access = [compat.open_engine(self.gen, self.ttrt, n, m) for n, m in self.modules]
        order: list[str] = []
        handles = [
            a.module.register_forward_pre_hook(lambda _m, _a, n=a.name: order.append(n))
            for a in access
        ]
        sink_cls = _sink_class(self.trt)
        by_name = {a.name: a for a in access}
        sinks = {a.name: sink_cls() for a in access}
        for a in access:
            a.context.profiler = sinks[a.name]
            a.context.enqueue_emits_profile = False
        try:
            self.infer()
        finally:
            for h in handles:
                h.remove()
        executed = list(dict.fromkeys(order))
        for a in access:
            if a.name not in executed:  # never runs: leave it as it was
                a.context.profiler = None
                a.context.enqueue_emits_profile = True
                a.close()
        self.engines = [by_name[n] for n in executed]
        self.sinks = [sinks[n] for n in executed]
        names: list[str] = []
        for k, (eng, sink) in enumerate(zip(self.engines, self.sinks, strict=True)):
            self._report(eng, -1)
            info = self._inspect(eng)
            rename = {}
            for reported in sink.seen:
                final = reported if reported not in names else f"{reported} [engine {k}]"
                rename[reported] = final
                names.append(final)
            layers = [_renamed(layer, rename) for layer in info.get("Layers", [])]
            self._info["Layers"].extend(layers)
            self._info["Bindings"].extend(info.get("Bindings", []))
            info_names = {layer["Name"] if isinstance(layer, dict) else layer for layer in layers}
            self._engine_notes.append(
                {
                    "module": eng.name,
                    "context": eng.via,
                    "layers_reported": len(sink.seen),
                    "layers_in_info": len(layers),
                    "reported_not_in_info": sorted(set(rename.values()) - info_names),
                    "bindings": info.get("Bindings", []),
                }
            )
            sink.index = {r: names.index(f) for r, f in rename.items()}
        return names

    def _report(self, eng: compat.EngineAccess, run: int) -> None:
        if eng.context.report_to_profiler() is False:
            where = "the discovery run" if run < 0 else f"profiling run {run}"
            raise WorkerRunError(
                f"IExecutionContext.report_to_profiler() failed for {eng.name} in {where} "
                "(no profiler attached, or the context was replaced)"
            )

    def _inspect(self, eng: compat.EngineAccess) -> dict[str, Any]:
        try:
            info = json.loads(eng.layer_info())
        except json.JSONDecodeError as e:
            raise WorkerRunError(f"engine inspector returned invalid JSON: {e}") from e
        info = info if isinstance(info, dict) else {"Layers": info, "Bindings": []}
        layers = info.get("Layers", [])
        if layers and not all(isinstance(layer, dict) for layer in layers):
            raise WorkerRunError(
                f"the engine info of {eng.name} has layer names only (profiling verbosity "
                f"LAYER_NAMES_ONLY, not DETAILED): torch-tensorrt {self.gen.name} was not asked "
                "for detail the way it understands; the layer parameters would be missing"
            )
        return info

    def profile_run(self, prof: LayerProfile, run: int) -> None:
        if self._prof is not prof:
            self._prof = prof
            if self.stand_in:
                shape = (prof.runs, len(prof.names))
                self._truth_end = np.zeros(shape, dtype=np.int64)
                self._truth_start = np.zeros(shape, dtype=np.int64)
        for s in self.sinks:
            s.reset(prof, run)
        start = monotonic_ns()
        with self.sync.context():
            self.compiled(self.x)
        self.sync.synchronize()
        end = monotonic_ns()
        for eng in self.engines:
            self._report(eng, run)
        self._check_reports(run)
        if self.stand_in:
            self._record_truth(run)
        prof.finish_run(run, start, end)

    def _check_reports(self, run: int) -> None:
        """Every engine filed each of its layers exactly once in this run, or the pass fails."""
        assert self._prof is not None
        for eng, sink in zip(self.engines, self.sinks, strict=True):
            assert sink.index is not None
            want = len(sink.index)
            every = bool(self._prof.seen[run, list(sink.index.values())].all())
            if sink.calls == want and sink.filed == want and every:
                continue
            if sink.filed < sink.calls:
                why = (
                    f"{sink.calls - sink.filed} report(s) arrived but were not filed"
                    + (f" (unknown layer names: {sink.unknown[:3]})" if sink.unknown else
                       " (the layer sink raised; TensorRT swallows that and prints '[ERROR] "
                       "Exception caught in report_layer_time()' on stderr)")
                )
            elif sink.calls < want:
                why = "TensorRT reported fewer layers than the engine has"
            else:
                why = "some layer was reported more than once and another not at all"
            raise WorkerRunError(
                f"profiling run {run} lost layer reports: engine {eng.name} filed {sink.filed} "
                f"of its {want} layers ({sink.calls} report_layer_time calls): {why}"
            )

    def _record_truth(self, run: int) -> None:
        for eng, sink in zip(self.engines, self.sinks, strict=True):
            truth = getattr(eng.context, "stand_in_truth", None) or []
            for name, t0, t1 in truth:
                j = sink.index.get(name) if sink.index else None
                if j is not None:
                    self._truth_start[run, j] = t0
                    self._truth_end[run, j] = t1

    def end_profiling(self) -> None:
        for s in self.sinks:
            s.prof = None
        for eng in self.engines:
            eng.context.profiler = None
            eng.context.enqueue_emits_profile = True
            eng.close()

    def engine_info(self) -> dict[str, Any]:
        return self._info

    def _stand_in_error(self) -> dict[str, Any] | None:
        """Reconstructed minus true window ends (and starts) on the stand-in's timeline, ns."""
        prof = self._prof
        if prof is None or self._truth_end is None or prof.done == 0:
            return None
        n = prof.done
        if not np.all(self._truth_end[:n] > 0):
            return None
        lat_ns = prof.lat_ms[:n].astype(np.float64) * 1e6
        ends = prof.start_ns[:n, None].astype(np.float64) + np.cumsum(lat_ns, axis=1)
        starts = ends - lat_ns
        out: dict[str, Any] = {"runs": n, "layers": len(prof.names)}
        for key, rec, true in (("end", ends, self._truth_end[:n]),
                               ("start", starts, self._truth_start[:n])):
            err = rec - true.astype(np.float64)
            mag = np.abs(err)
            out[key] = {
                "median_abs_ns": float(np.median(mag)),
                "p99_abs_ns": float(np.percentile(mag, 99)),
                "max_abs_ns": float(mag.max()),
                "mean_signed_ns": float(err.mean()),
            }
        return out

    def describe(self) -> dict[str, Any]:
        torch, gen = self.torch, self.gen
        d: dict[str, Any] = {
            "versions": {
                "torch": torch.__version__,
                "torch_tensorrt": getattr(self.ttrt, "__version__", "unknown"),
                "tensorrt": getattr(self.trt, "__version__", "unknown"),
            },
            "alignment_method": ALIGNMENT,
            "profiling": {"engines": self._engine_notes, "merge": MERGE_RULE},
            "torch_tensorrt_generation": {
                "name": gen.name,
                "detail": gen.detail,
                "precision": gen.precision,
                "runtime": gen.runtime,
                "sources": list(gen.sources),
            },
        }
        err = self._stand_in_error() if self.stand_in else None
        if err is not None:
            d["alignment"] = {
                "stand_in_error": err,
                "stand_in_note": (
                    "reconstructed minus true layer windows on the stand-in's simulated device "
                    "(launch latency, enqueue cost and inter-kernel gaps drawn per run); a "
                    "property of the method on that model, not a measurement of any GPU"
                ),
            }
        if self.stand_in:
            d["stand_in"] = True
        if isinstance(self.sync, CudaSync):
            d["device_name"] = torch.cuda.get_device_name()
            d["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
        return d


def _renamed(layer: Any, rename: dict[str, str]) -> Any:
    if isinstance(layer, dict) and layer.get("Name") in rename:
        return {**layer, "Name": rename[layer["Name"]]}
    if isinstance(layer, str):
        return rename.get(layer, layer)
    return layer
