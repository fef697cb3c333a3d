"""Stand-in for ``torch_tensorrt.dynamo``: ``compile`` as each release declares and treats it.

``compile`` returns a module with two engines around a PyTorch fallback op, from
``tests/fixtures/trt/resnet18_two_engines.json`` (or ``$JETPOWER_FAKE_TRT_FIXTURE``).  Per release
(pytorch/TensorRT ``py/torch_tensorrt/dynamo/_compiler.py`` and
``conversion/_TRTInterpreter.py`` at each tag):

- the engine's profiling verbosity is DETAILED only if the release's condition holds
  (``debug`` before 2.8; an open ``Debugger`` with ``save_engine_profile`` in 2.8-2.11; any open
  ``Debugger`` from 2.12), else LAYER_NAMES_ONLY;
- ``debug`` is a parameter before 2.8, afterwards a keyword that only warns;
- ``use_explicit_typing`` (2.6-2.12; default True from 2.10) rejects ``enabled_precisions`` other
  than float32 with AssertionError; 2.13 has neither, unknown keywords are ignored;
- before 2.13 ``use_python_runtime`` picks PythonTorchTensorRTModule; from 2.13 it only warns and
  the engines are TorchTensorRTModule on whichever runtime is installed;
- with ``save_engine_profile`` the compiler turns on each module's own profiling (Python runtime:
  only with profile_format "cudagraph", else ValueError), which attaches ``trt.Profiler()``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import tensorrt as trt
import torch

from torch_tensorrt import ENABLED_FEATURES, _generation
from torch_tensorrt.dynamo import runtime
from torch_tensorrt.dynamo._debugger import ACTIVE

#: keyword arguments of every compile call (as the caller passed them), for tests to inspect
CALLS: list[dict[str, Any]] = []

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "trt" / "resnet18_two_engines.json"
_FALLBACK_NS = 4000  # the PyTorch op between the engines, on the simulated stream


class _Compiled(torch.nn.Module):
    """Like torch-tensorrt's GraphModule: engine, PyTorch fallback op, engine."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        super().__init__()
        self.names = []
        for i, m in enumerate(modules):
            name = f"_run_on_acc_{2 * i}"
            self.add_module(name, m)
            self.names.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(self.names):
            if i:
                x = torch.relu(x)  # the PyTorch fallback between engines
                trt.stand_in_kernel(_FALLBACK_NS)
            x = getattr(self, name)(x)
        return x


def _build(
    exported_program: Any,
    *,
    debug: bool,
    use_python_runtime: bool,
    enabled_precisions: Any,
    use_explicit_typing: bool,
    kwargs: dict[str, Any],
) -> torch.nn.Module:
    if not isinstance(exported_program, torch.export.ExportedProgram):
        raise TypeError("dynamo.compile expects a torch.export.ExportedProgram")
    if not _generation.HAS_DEBUG_PARAM and kwargs.get("debug", False):
        warnings.warn(
            "`debug` is deprecated. Please use `with torch_tensorrt.dynamo.Debugger(...)` to wrap "
            "your compilation call to enable debugging functionality.",
            DeprecationWarning,
            stacklevel=3,
        )
    if _generation.at_least(2, 13) and use_python_runtime:
        warnings.warn(
            "`use_python_runtime` is deprecated and has no effect.",
            DeprecationWarning,
            stacklevel=3,
        )
    if (
        use_explicit_typing
        and enabled_precisions is not None
        and (len(enabled_precisions) != 1 or torch.float32 not in enabled_precisions)
    ):
        raise AssertionError(
            "use_explicit_typing was set to True, however found that enabled_precisions was "
            f"also specified (saw: {enabled_precisions}, expected: dtype.f32, dtype.f4). "
            "enabled_precisions should not be used when use_explicit_typing=True"
        )
    dbg = ACTIVE[-1] if ACTIVE else None
    if _generation.HAS_DEBUG_PARAM:
        detailed = debug
    elif _generation.DETAIL_NEEDS_ENGINE_PROFILE:
        detailed = dbg is not None and dbg.save_engine_profile
    else:
        detailed = dbg is not None
    if detailed and _generation.MM < (2, 4):
        verbosity = trt.ProfilingVerbosity.VERBOSE  # the 24.06-igpu snapshot; TensorRT 8.6 only
    else:
        verbosity = (
            trt.ProfilingVerbosity.DETAILED if detailed else trt.ProfilingVerbosity.LAYER_NAMES_ONLY
        )
    fixture = json.loads(Path(os.environ.get("JETPOWER_FAKE_TRT_FIXTURE", FIXTURE)).read_text())
    python_module = _generation.HAS_PYTHON_MODULE and use_python_runtime
    modules: list[torch.nn.Module] = []
    for i, spec in enumerate(fixture["engines"]):
        name = f"_run_on_acc_{2 * i}"
        blob = trt.ICudaEngine(spec, verbosity.name, seed=i).serialize()
        if python_module:
            mod: Any = runtime.PythonTorchTensorRTModule(blob, name=name)
        else:
            mod = runtime.TorchTensorRTModule(blob, name=name)
        if dbg is not None and dbg.save_engine_profile:
            python_rt = python_module or not ENABLED_FEATURES.torch_tensorrt_runtime
            if python_rt:
                if dbg.profile_format != "cudagraph":
                    raise ValueError(
                        "Profiling with TREX can only be enabled when using the C++ runtime. "
                        "Python runtime profiling only support cudagraph visualization."
                    )
                mod.enable_profiling()
            else:
                if dbg.profile_format == "cudagraph":
                    raise ValueError(
                        "Profiling with Cudagraph can only be enabled when using the Python "
                        "runtime. C++ runtime profiling only support TREX/Perfetto visualization."
                    )
                mod.enable_profiling(profiling_results_dir=dbg.logging_dir,
                                     profile_format=dbg.profile_format)
        modules.append(mod)
    return _Compiled(modules)


def _record(**kw: Any) -> None:
    CALLS.append({k: v for k, v in kw.items() if v is not _UNSET} | {"debugger": ACTIVE[-1:]})


_UNSET: Any = object()

if _generation.HAS_DEBUG_PARAM and not _generation.HAS_EXPLICIT_TYPING_PARAM:  # 2.3-2.5

    def compile(
        exported_program: Any,
        inputs: Any = None,
        *,
        enabled_precisions: Any = _UNSET,
        debug: bool = False,
        use_python_runtime: bool = False,
        optimization_level: int | None = None,
        min_block_size: int = 5,
        **kwargs: Any,
    ) -> torch.nn.Module:
        _record(inputs=inputs, enabled_precisions=enabled_precisions, debug=debug,
                use_python_runtime=use_python_runtime, optimization_level=optimization_level,
                min_block_size=min_block_size, **kwargs)
        return _build(exported_program, debug=debug, use_python_runtime=use_python_runtime,
                      enabled_precisions=None, use_explicit_typing=False, kwargs=kwargs)

elif _generation.HAS_DEBUG_PARAM:  # 2.6-2.7

    def compile(
        exported_program: Any,
        inputs: Any = None,
        *,
        enabled_precisions: Any = _UNSET,
        debug: bool = False,
        use_python_runtime: bool = False,
        optimization_level: int | None = None,
        min_block_size: int = 5,
        use_explicit_typing: bool = _generation.EXPLICIT_TYPING_DEFAULT,
        **kwargs: Any,
    ) -> torch.nn.Module:
        _record(inputs=inputs, enabled_precisions=enabled_precisions, debug=debug,
                use_python_runtime=use_python_runtime, optimization_level=optimization_level,
                min_block_size=min_block_size, **kwargs)
        prec = None if enabled_precisions is _UNSET else enabled_precisions
        return _build(exported_program, debug=debug, use_python_runtime=use_python_runtime,
                      enabled_precisions=prec, use_explicit_typing=use_explicit_typing,
                      kwargs=kwargs)

elif _generation.HAS_ENABLED_PRECISIONS:  # 2.8-2.12

    def compile(
        exported_program: Any,
        inputs: Any = None,
        *,
        enabled_precisions: Any = _UNSET,
        use_python_runtime: bool = False,
        optimization_level: int | None = None,
        min_block_size: int = 5,
        use_explicit_typing: bool = _generation.EXPLICIT_TYPING_DEFAULT,
        **kwargs: Any,
    ) -> torch.nn.Module:
        _record(inputs=inputs, enabled_precisions=enabled_precisions,
                use_python_runtime=use_python_runtime, optimization_level=optimization_level,
                min_block_size=min_block_size, **kwargs)
        prec = None if enabled_precisions is _UNSET else enabled_precisions
        return _build(exported_program, debug=False, use_python_runtime=use_python_runtime,
                      enabled_precisions=prec, use_explicit_typing=use_explicit_typing,
                      kwargs=kwargs)

else:  # 2.13-2.14

    def compile(
        exported_program: Any,
        inputs: Any = None,
        *,
        use_python_runtime: bool = False,
        optimization_level: int | None = None,
        min_block_size: int = 5,
        **kwargs: Any,
    ) -> torch.nn.Module:
        _record(inputs=inputs, use_python_runtime=use_python_runtime,
                optimization_level=optimization_level, min_block_size=min_block_size, **kwargs)
        return _build(exported_program, debug=False, use_python_runtime=use_python_runtime,
                      enabled_precisions=None, use_explicit_typing=True, kwargs=kwargs)


if _generation.HAS_DEBUGGER:
    from torch_tensorrt.dynamo._debugger import Debugger  # noqa: F401
