"""The ``tensorrt`` backend: torch-tensorrt (dynamo) compile, per-layer latency from TensorRT.

APIs, as of TensorRT 10.1 / torch-tensorrt 2.4 (the Jetson container of the original experiment):

- ``torch.export.export(model, (x,))`` then ``torch_tensorrt.dynamo.compile(ep, inputs=[x],
  enabled_precisions={dtype}, optimization_level=, min_block_size=, use_python_runtime=True,
  debug=True)``.  In 2.4, ``debug=True`` is what makes the builder use detailed profiling
  verbosity (layer parameters in the engine info).  Newer torch-tensorrt releases dropped
  ``debug`` for the ``torch_tensorrt.dynamo.Debugger`` context manager: when ``compile`` takes no
  ``debug`` argument the compile runs inside ``Debugger()`` instead.
- Every ``PythonTorchTensorRTModule`` submodule of the compiled module is an engine; its
  ``ICudaEngine`` is ``.engine`` in 2.4 and ``.cuda_engine`` in later releases (both handled), its
  ``IExecutionContext`` is ``.context``.
- ``context.profiler = <trt.IProfiler subclass>``, ``context.enqueue_emits_profile = False``, and
  after the stream completed ``context.report_to_profiler()``: enqueue stays asynchronous.
- ``engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)``.

Several engines are merged into one ``trt_engine_info.json``: ``Layers`` concatenated in engine
execution order, ``Bindings`` concatenated in the same order; a layer name already used by an
earlier engine gets the suffix `` [engine N]`` in both result files.

Without CUDA the backend runs only against the test stand-in (``tensorrt.JETPOWER_STAND_IN``), with
a no-op stream; device and stream handling are injectable through ``sync``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Any, Protocol

from jetpower.timebase import monotonic_ns
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
    "after the stream completed; PyTorch fallback ops between engines are in no window"
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


class NullSync:
    """No device: the stand-in runs synchronously on CPU tensors."""

    def context(self) -> Any:
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        return None


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
        """Receives one engine's ``report_layer_time`` calls and files them in the profile."""

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.index: dict[str, int] | None = None  # None: discovery (record names in order)
            self.seen: list[str] = []
            self.prof: LayerProfile | None = None
            self.run = 0

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if self.index is None:
                self.seen.append(layer_name)
            elif self.prof is not None:
                i = self.index.get(layer_name)
                if i is None:
                    self.prof.unknown_reports += 1
                else:
                    self.prof.record(self.run, i, ms)

    return LayerSink


class TrtBackend:
    """torch-tensorrt, see the module docstring."""

    name = "tensorrt"

    def __init__(self, cfg: WorkerConfig, sync: StreamSync | None = None) -> None:
        self.cfg = cfg
        self.torch = torch = import_torch()
        self.trt, self.ttrt = _import_trt()
        if cfg.device == "cpu":
            raise WorkerConfigError("the tensorrt backend runs on CUDA only; use backend 'torch'")
        stand_in = bool(getattr(self.trt, "JETPOWER_STAND_IN", False))
        if sync is None:
            if torch.cuda.is_available():
                sync = CudaSync(torch)
            elif stand_in:
                sync = NullSync()
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
        self.engines: list[tuple[str, Any]] = []  # (submodule name, module), execution order
        self.sinks: list[Any] = []
        self._info: dict[str, Any] = {"Layers": [], "Bindings": []}
        self._engine_notes: list[dict[str, Any]] = []
        torch.set_grad_enabled(False)

    def load(self) -> None:
        model = models.build(self.cfg.model, self.cfg.weights)
        self.model = model.to(device=self.dev, dtype=self.dtype)
        self.x = self.torch.randn(*self.input_shape, device=self.dev, dtype=self.dtype)

    def compile(self) -> None:
        torch, dyn = self.torch, self.ttrt.dynamo
        try:
            ep = torch.export.export(self.model, (self.x,))
        except Exception as e:
            raise WorkerRunError(f"torch.export of {self.cfg.model!r} failed: {e}") from e
        kw: dict[str, Any] = {
            "inputs": [self.x],
            "enabled_precisions": {self.dtype},
            "optimization_level": self.cfg.optimization_level,
            "min_block_size": self.cfg.min_block_size,
            "use_python_runtime": True,
        }
        ctx: Any = contextlib.nullcontext()
        if "debug" in inspect.signature(dyn.compile).parameters:
            kw["debug"] = True  # 2.4: detailed profiling verbosity
        elif hasattr(dyn, "Debugger"):
            ctx = dyn.Debugger()
        try:
            with ctx:
                self.compiled = dyn.compile(ep, **kw)
        except Exception as e:
            raise WorkerRunError(f"torch-tensorrt compile of {self.cfg.model!r} failed: {e}") from e
        runtime_cls = self.ttrt.dynamo.runtime.PythonTorchTensorRTModule
        self.engines = [
            (n, m) for n, m in self.compiled.named_modules() if isinstance(m, runtime_cls)
        ]
        if not self.engines:
            raise WorkerRunError(
                "the compiled module holds no TensorRT engine (everything fell back to PyTorch; "
                f"min_block_size={self.cfg.min_block_size} may be too large)"
            )

    def infer(self) -> None:
        with self.sync.context():
            self.compiled(self.x)
        self.sync.synchronize()

    # -- profiling ----------------------------------------------------------------------------

    def prepare_profiling(self) -> list[str]:
        """Attach a profiler to every engine, learn their execution order and layer names."""
        order: list[str] = []
        handles = [
            m.register_forward_pre_hook(lambda _m, _a, n=n: order.append(n))
            for n, m in self.engines
        ]
        sink_cls = _sink_class(self.trt)
        by_name = dict(self.engines)
        sinks = {n: sink_cls() for n in by_name}
        for n, m in self.engines:
            m.context.profiler = sinks[n]
            m.context.enqueue_emits_profile = False
        try:
            self.infer()
        finally:
            for h in handles:
                h.remove()
        executed = list(dict.fromkeys(order))
        self.engines = [(n, by_name[n]) for n in executed]
        self.sinks = [sinks[n] for n in executed]
        names: list[str] = []
        for k, ((mod_name, mod), sink) in enumerate(zip(self.engines, self.sinks, strict=True)):
            self._report(mod.context)
            info = self._inspect(mod)
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
                    "module": mod_name,
                    "layers_reported": len(sink.seen),
                    "layers_in_info": len(layers),
                    "reported_not_in_info": sorted(set(rename.values()) - info_names),
                    "bindings": info.get("Bindings", []),
                }
            )
            sink.index = {r: names.index(f) for r, f in rename.items()}
        return names

    def _report(self, context: Any) -> None:
        if context.report_to_profiler() is False:
            raise WorkerRunError("IExecutionContext.report_to_profiler() failed")

    def _inspect(self, mod: Any) -> dict[str, Any]:
        engine = next(
            (
                e
                for e in (getattr(mod, "cuda_engine", None), getattr(mod, "engine", None))
                if e is not None and hasattr(e, "create_engine_inspector")
            ),
            None,
        )
        if engine is None:
            raise WorkerRunError("cannot find the ICudaEngine of a PythonTorchTensorRTModule")
        text = engine.create_engine_inspector().get_engine_information(
            self.trt.LayerInformationFormat.JSON
        )
        try:
            info = json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkerRunError(f"engine inspector returned invalid JSON: {e}") from e
        return info if isinstance(info, dict) else {"Layers": info, "Bindings": []}

    def profile_run(self, prof: LayerProfile, run: int) -> None:
        for s in self.sinks:
            s.prof, s.run = prof, run
        start = monotonic_ns()
        with self.sync.context():
            self.compiled(self.x)
        self.sync.synchronize()
        end = monotonic_ns()
        for _, mod in self.engines:
            self._report(mod.context)
        prof.finish_run(run, start, end)

    def end_profiling(self) -> None:
        for s in self.sinks:
            s.prof = None
        for _, mod in self.engines:
            mod.context.profiler = None
            mod.context.enqueue_emits_profile = True

    def engine_info(self) -> dict[str, Any]:
        return self._info

    def describe(self) -> dict[str, Any]:
        torch = self.torch
        d: dict[str, Any] = {
            "versions": {
                "torch": torch.__version__,
                "torch_tensorrt": getattr(self.ttrt, "__version__", "unknown"),
                "tensorrt": getattr(self.trt, "__version__", "unknown"),
            },
            "alignment_method": ALIGNMENT,
            "profiling": {"engines": self._engine_notes, "merge": MERGE_RULE},
        }
        if self.device == "stand-in":
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
