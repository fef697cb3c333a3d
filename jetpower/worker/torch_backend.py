"""The ``torch`` backend: eager PyTorch on CUDA or CPU, per-layer latency on leaf modules.

Timing pass: the bare model, no hooks (on CUDA, on a non-default stream, synchronised per run).
Profiling pass: forward pre/post hooks on every leaf module, installed only for that pass and
removed after it.  Each leaf call's window is measured (``worker/alignment.py``): on CPU the hooks
stamp CLOCK_MONOTONIC; on GPU they record CUDA events, placed on CLOCK_MONOTONIC from an event
anchored at the run's start.  A leaf module called several times per inference (a shared ReLU)
is one layer per call; later calls are named ``<module>#2``, ``<module>#3``...  The layer info
file has TensorRT's JSON shape.  When the config asks (``layer_energy = "isolated"``), an isolation
pass (``worker/isolate.py``) follows the profiling pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jetpower.sensors.truthbus import Publisher
from jetpower.timebase import monotonic_ns
from jetpower.worker import alignment, models
from jetpower.worker._torchinfo import layer_entry, tensor_entry
from jetpower.worker.config import WorkerConfig, WorkerConfigError, WorkerRunError
from jetpower.worker.profile import LayerProfile


def import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise WorkerConfigError(
            "the torch backend needs PyTorch, which is not installed: pip install 'jetpower[torch]'"
        ) from e
    return torch


def torch_dtype(torch: Any, name: str) -> Any:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def resolve_device(torch: Any, want: str) -> str:
    have_cuda = bool(torch.cuda.is_available())
    if want == "cuda" and not have_cuda:
        raise WorkerConfigError("device 'cuda' was asked for, but PyTorch sees no CUDA device")
    if want == "auto":
        return "cuda" if have_cuda else "cpu"
    return want


def check_dtype(torch: Any, device: str, dtype_name: str) -> None:
    """Refuse a dtype the device cannot run convolutions in, with a clear message."""
    if dtype_name == "float32":
        return
    if device == "cuda":
        if dtype_name == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise WorkerConfigError("dtype 'bfloat16' is not supported by this GPU; use float16")
        return
    dt = torch_dtype(torch, dtype_name)
    try:
        x = torch.ones(1, 2, 5, 5, dtype=dt)
        w = torch.ones(2, 2, 3, 3, dtype=dt)
        torch.nn.functional.conv2d(x, w)
    except (RuntimeError, NotImplementedError) as e:
        raise WorkerConfigError(
            f"dtype {dtype_name!r} convolutions do not run on this CPU with PyTorch "
            f"{torch.__version__} ({e}); use float32"
        ) from e


def _open_counter(cfg: WorkerConfig, be: TorchBackend) -> Any:
    """The isolation pass's energy counter, opened before anything runs so that it fails early."""
    from jetpower.worker import energy

    want = cfg.layer_energy_counter
    if want == "simulated":
        # a launch is reported when it has finished: publishing one period (20 ms) late absorbs
        # that; the pass's settling time (one period) covers the lag
        return energy.SimulatedCounter(power_of=energy.simulated_power, lag_periods=1)
    if not be.cuda:
        raise WorkerConfigError(
            'layer_energy "isolated" needs an energy counter: NVML\'s, on a CUDA GPU (device '
            f'is {be.device!r}); layer_energy_counter "simulated" runs it on a simulated one'
        )
    try:
        return energy.cuda_counter(be.torch)
    except energy.CounterError as e:
        raise WorkerConfigError(f'layer_energy "isolated": {e}') from e


class TorchBackend:
    """Eager PyTorch, see the module docstring."""

    name = "torch"

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.torch = torch = import_torch()
        self.device = resolve_device(torch, cfg.device)
        check_dtype(torch, self.device, cfg.dtype)
        self.dtype = torch_dtype(torch, cfg.dtype)
        self.input_shape = cfg.input_shape or models.default_input_shape(cfg.model)
        self.cuda = self.device == "cuda"
        self.stream: Any = torch.cuda.Stream() if self.cuda else None
        self.model: Any = None
        self.x: Any = None
        self._leaves: list[tuple[str, Any]] = []
        self._layers: list[dict[str, Any]] = []
        self._handles: list[Any] = []
        self._pos = 0
        self._run = 0
        self._prof: LayerProfile | None = None
        self._ev: list[tuple[Any, Any]] = []
        self._starts: list[int] = []  # CPU: each layer's start stamp in the current run
        self._anchor_hw = np.zeros(0, dtype=np.float32)  # CUDA: anchor half-width per run, ns
        self._cpu_cal: dict[str, Any] | None = None
        self._corr = (0.0, 0.0)  # CPU: hook dispatch before / after a module's forward, ns
        self.isolation: dict[str, Any] | None = None  # the isolation pass's result, when run
        self._bus: Publisher | None = None  # simulated runs: publishes the running layer
        torch.set_grad_enabled(False)
        self.counter: Any = _open_counter(cfg, self) if cfg.layer_energy == "isolated" else None

    # -- phases -------------------------------------------------------------------------------

    def load(self) -> None:
        torch = self.torch
        model = models.build(self.cfg.model, self.cfg.weights)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.x = torch.randn(*self.input_shape, device=self.device, dtype=self.dtype)
        self._leaves = [
            (n or type(m).__name__, m)
            for n, m in self.model.named_modules()
            if not any(m.children())
        ]

    def compile(self) -> None:
        """Eager mode compiles nothing; one forward checks that the model runs on this input."""
        try:
            self.infer()
        except RuntimeError as e:
            raise WorkerConfigError(
                f"model {self.cfg.model!r} does not run on input {list(self.input_shape)} "
                f"({self.cfg.dtype}, {self.device}): {e}"
            ) from e

    def _stream_ctx(self) -> Any:
        return self.torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

    def infer(self) -> None:
        """One inference, finished when this returns (the timing pass: no hooks installed)."""
        with self._stream_ctx():
            self.model(self.x)
        if self.cuda:
            self.stream.synchronize()

    # -- profiling ----------------------------------------------------------------------------

    def prepare_profiling(self) -> list[str]:
        """One untimed run that records the leaf calls in order; returns the layer names."""
        calls: dict[str, int] = {}
        tensor_names: dict[int, str] = {id(self.x): "x"}
        keep: list[Any] = []  # outputs stay alive during the run, so their ids stay unique
        layers: list[dict[str, Any]] = []

        def hook_for(qual: str) -> Callable[[Any, Any, Any], None]:
            def post(mod: Any, args: Any, out: Any) -> None:
                calls[qual] = calls.get(qual, 0) + 1
                name = qual if calls[qual] == 1 else f"{qual}#{calls[qual]}"
                outs = list(out) if isinstance(out, tuple | list) else [out]
                ins = [a for a in args if isinstance(a, self.torch.Tensor)]
                out_entries = []
                for k, o in enumerate(outs):
                    tensor_names[id(o)] = f"{name}_output{k}"
                    keep.append(o)
                    out_entries.append(tensor_entry(tensor_names[id(o)], o))
                in_entries = [
                    tensor_entry(tensor_names.get(id(a), f"{name}_input{k}"), a)
                    for k, a in enumerate(ins)
                ]
                layers.append(
                    layer_entry(
                        name,
                        mod=mod,
                        inputs=in_entries,
                        outputs=out_entries,
                        in_tensors=ins,
                        out_tensors=outs,
                    )
                )

            return post

        handles = [m.register_forward_hook(hook_for(q)) for q, m in self._leaves]
        try:
            with self._stream_ctx():
                out = self.model(self.x)
            if self.cuda:
                self.stream.synchronize()
        finally:
            for h in handles:
                h.remove()
        last = out[0] if isinstance(out, tuple | list) else out
        self._output_name = tensor_names.get(id(last), "output0")
        self._layers = layers
        names = [layer["Name"] for layer in layers]
        if not names:
            raise WorkerRunError(f"model {self.cfg.model!r} has no leaf modules to profile")
        for q, m in self._leaves:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))
            del q
        if self.cuda:
            ev = self.torch.cuda.Event
            self._ev = [(ev(enable_timing=True), ev(enable_timing=True)) for _ in names]
        else:
            self._starts = [0] * len(names)
            self._cpu_cal = cal = alignment.calibrate_cpu_hooks(self.torch)
            self._corr = (cal["start_correction_ns"], cal["end_correction_ns"])
            if self.cfg.truth_bus:
                self._bus = Publisher(Path(self.cfg.truth_bus), names)
        return names

    def _pre(self, mod: Any, args: Any) -> None:
        pos = self._pos
        if self.cuda:
            if pos < len(self._ev):
                self._ev[pos][0].record(self.stream)
        elif pos < len(self._starts):
            if self._bus is not None:
                self._bus.begin(pos, monotonic_ns() + int(self._corr[0]))
            self._starts[pos] = monotonic_ns()  # the last statement: the module runs next

    def _post(self, mod: Any, args: Any, out: Any) -> None:
        end = monotonic_ns()  # the first statement: the module has just returned
        pos = self._pos
        self._pos = pos + 1
        if self.cuda:
            if pos < len(self._ev):
                self._ev[pos][1].record(self.stream)
        elif self._prof is not None and pos < len(self._prof.names):
            c0, c1 = self._corr
            start = self._starts[pos] + c0
            # a module faster than the dispatch's spread keeps a 1 ns window, never a negative one
            stop = max(end - c1, start + 1)
            self._prof.record_window(self._run, pos, start, stop)
            if self._bus is not None:
                self._bus.end(pos, int(stop))

    def profile_run(self, prof: LayerProfile, run: int) -> None:
        self._prof, self._run, self._pos = prof, run, 0
        anchor = None
        if self.cuda:
            if self._anchor_hw.size < prof.runs:
                self._anchor_hw = np.zeros(prof.runs, dtype=np.float32)
            anchor = alignment.anchor_event(self.torch, self.stream)
            start = anchor.h0_ns
            self._anchor_hw[run] = anchor.half_width_ns
        else:
            start = monotonic_ns()
        prof.begin_run(run, start)
        with self._stream_ctx():
            self.model(self.x)
        if self.cuda:
            self.stream.synchronize()
        end = monotonic_ns()
        if self._pos != len(prof.names):
            raise WorkerRunError(
                f"profiled run {run} called {self._pos} leaf modules, the first run "
                f"{len(prof.names)}: the model's control flow is not static"
            )
        if anchor is not None:
            for i, (a, b) in enumerate(self._ev):
                prof.record_window(run, i, anchor.place(a), anchor.place(b))
        prof.finish_run(run, start, end)

    def end_profiling(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._done_runs = self._prof.done if self._prof is not None else 0
        self._prof = None
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    def alignment(self) -> dict[str, Any]:
        """The method of placing layer windows on CLOCK_MONOTONIC and its measured error."""
        if self.cuda:
            hw = self._anchor_hw[: getattr(self, "_done_runs", 0)]
            s = alignment.summary(hw)
            return {
                "method": alignment.CUDA_METHOD,
                "expected_error_ns": s["median_ns"],
                "max_error_ns": s["max_ns"],
                "anchor_half_width_ns": s,
            }
        cal = self._cpu_cal or alignment.calibrate_cpu_hooks(self.torch)
        return {
            "method": alignment.CPU_METHOD,
            "expected_error_ns": cal["residual"]["median_ns"],
            "max_error_ns": cal["residual"]["p99_ns"],
            "cpu_hook_calibration": cal,
        }

    # -- isolated per-layer energy --------------------------------------------------------------

    def isolation_settings(self) -> Any:
        """The isolation pass's settings: the config's precision and cap, the rest defaults."""
        from jetpower.worker import isolate

        return isolate.Settings(
            precision=self.cfg.layer_energy_precision,
            max_seconds=self.cfg.layer_energy_max_seconds,
        )

    def isolation_pass(self, progress: Any = None) -> dict[str, Any]:
        """Replay each leaf layer alone (``worker/isolate.py``); returns the result document."""
        from jetpower.worker import isolate

        if self.counter is None:
            raise WorkerConfigError("the isolation pass needs an energy counter (layer_energy)")
        cfg = self.cfg
        try:
            doc = isolate.run_pass(self, self.counter, self.isolation_settings(), progress)
        finally:
            self.counter.close()
        doc = {
            "format": doc.pop("format"),
            "version": doc.pop("version"),
            "model": cfg.model,
            "label": cfg.model_dir.name,
            "backend": self.name,
            "device": self.device,
            "device_name": self.torch.cuda.get_device_name() if self.cuda else "cpu",
            "dtype": cfg.dtype,
            "input_shape": list(self.input_shape),
            **doc,
        }
        self.isolation = doc
        return doc

    def hooks_installed(self) -> int:
        """How many hooks the backend has on the model now (0 outside the profiling pass)."""
        return len(self._handles)

    # -- descriptions -------------------------------------------------------------------------

    def engine_info(self) -> dict[str, Any]:
        return {"Layers": self._layers, "Bindings": ["x", getattr(self, "_output_name", "output0")]}

    def describe(self) -> dict[str, Any]:
        torch = self.torch
        d: dict[str, Any] = {
            "versions": {"torch": torch.__version__},
            "alignment": self.alignment(),
            "layer_source": "leaf torch.nn modules, one layer per call, in call order",
        }
        if self.cuda:
            d["device_name"] = torch.cuda.get_device_name()
            d["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
        return d
