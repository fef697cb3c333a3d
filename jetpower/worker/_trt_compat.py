"""What differs between torch-tensorrt releases, as data, and the few calls that depend on it.

Every fact here was read in the release's own source (repository pytorch/TensorRT, at the tag
named); nothing is inferred from documentation alone.  The backend (:mod:`trt_backend`) asks this
module three things: which generation is installed (:func:`detect`), how to compile so that the
engine info is DETAILED (:func:`compile_kwargs`, :func:`detail_context`, :func:`after_compile`),
and how to reach each engine's ``IExecutionContext`` (:func:`engine_modules`, :func:`open_engine`).

=============  ===========================  ============================  =======================
generation     DETAILED engine info         precision                     execution context
=============  ===========================  ============================  =======================
2.3 (NGC iGPU) ``compile(debug=True)``      ``enabled_precisions``        PythonTorchTensorRTModule
2.4            ``compile(debug=True)``      ``enabled_precisions``        PythonTorchTensorRTModule
2.5-2.7        ``compile(debug=True)``      ``enabled_precisions``        PythonTorchTensorRTModule
2.8-2.9        ``Debugger(save_engine_      ``enabled_precisions``        PythonTorchTensorRTModule
               profile=True)`` + undo
2.10-2.11      as 2.8-2.9                   model dtype (strong typing)   PythonTorchTensorRTModule
2.12           any ``Debugger()``           model dtype (strong typing)   PythonTorchTensorRTModule
2.13-2.14      any ``Debugger()``           model dtype (always strong)   TorchTensorRTModule: its
                                                                          Python TRTEngine, or a
                                                                          Python twin of the C++ one
=============  ===========================  ============================  =======================

``.cuda_engine`` exists on no runtime module from 2.4 to 2.12 (the Python module's ICudaEngine is
``.engine``); only 2.13's Python ``TRTEngine`` has it.  The engine info is read through
``get_layer_info()``, which every release's runtime module has.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from jetpower.worker.config import WorkerConfigError, WorkerRunError

#: the range jetpower's stand-ins and source checks cover (inclusive, major.minor)
FIRST = (2, 4)
LAST = (2, 14)
RANGE_TEXT = "2.4-2.14 (and the 2.3 pre-release of NGC's 24.0x-py3-igpu containers)"

Detail = Literal["debug_kwarg", "debugger_engine_profile", "debugger"]
Precision = Literal["enabled_precisions", "model_dtype"]
Runtime = Literal["python_module", "torchtrt_module"]


@dataclass(frozen=True)
class Generation:
    """One run of releases that jetpower drives with the same calls."""

    name: str
    first: tuple[int, int]
    last: tuple[int, int]
    detail: Detail
    precision: Precision
    runtime: Runtime
    prerelease_only: bool = False
    #: where the facts behind this row were read (repository pytorch/TensorRT)
    sources: tuple[str, ...] = ()

    def covers(self, mm: tuple[int, int], prerelease: bool) -> bool:
        return self.first <= mm <= self.last and (prerelease or not self.prerelease_only)


_PY_MODULE_2_4 = "v2.4.0 py/torch_tensorrt/dynamo/runtime/_PythonTorchTensorRTModule.py"
_DEBUG_KWARG = (
    "py/torch_tensorrt/dynamo/_compiler.py compile(debug=...) and "
    "conversion/_TRTInterpreter.py: DETAILED if compilation_settings.debug"
)

GENERATIONS: tuple[Generation, ...] = (
    # NGC's iGPU containers (24.05/24.06/24.07-py3-igpu, JetPack 6.0) ship branch
    # release/ngc/24.06_igpu: version.txt 2.3.0a0, dev_dep_versions.yml TensorRT 8.6.  Same calls
    # as 2.4 (compile(debug=), PythonTorchTensorRTModule.engine/.context); its interpreter asks for
    # ProfilingVerbosity.VERBOSE, TensorRT 8.6's alias of DETAILED.
    Generation(
        "2.3-ngc-igpu", (2, 3), (2, 3), "debug_kwarg", "enabled_precisions", "python_module",
        prerelease_only=True,
        sources=(f"release/ngc/24.06_igpu {_DEBUG_KWARG}",
                 "release/ngc/24.06_igpu dev_dep_versions.yml"),
    ),
    Generation(
        "2.4", (2, 4), (2, 4), "debug_kwarg", "enabled_precisions", "python_module",
        sources=(f"v2.4.0 {_DEBUG_KWARG}", _PY_MODULE_2_4),
    ),
    # 2.5 moved the engine onto the module's own stream (_engine_stream, synchronised with the
    # caller's both ways); the calls jetpower makes are unchanged.
    Generation(
        "2.5-2.7", (2, 5), (2, 7), "debug_kwarg", "enabled_precisions", "python_module",
        sources=(f"v2.5.0, v2.7.0 {_DEBUG_KWARG}",),
    ),
    # 2.8 dropped compile(debug=) (a 'debug' kwarg only warns) for dynamo.Debugger; DETAILED needs
    # its save_engine_profile=True (v2.8.0 conversion/_TRTInterpreter.py), and with the Python
    # runtime that requires profile_format="cudagraph" and makes compile() call each module's
    # enable_profiling(): a trt.Profiler() printing to stdout (v2.8.0 dynamo/_compiler.py,
    # runtime/_PythonTorchTensorRTModule.py).  after_compile() undoes it.
    Generation(
        "2.8-2.9", (2, 8), (2, 9), "debugger_engine_profile", "enabled_precisions",
        "python_module",
        sources=("v2.8.0 py/torch_tensorrt/dynamo/debug/_Debugger.py, _DebuggerConfig.py",
                 "v2.8.0 py/torch_tensorrt/dynamo/_compiler.py (save_engine_profile branch)"),
    ),
    # 2.10 made use_explicit_typing default True: enabled_precisions other than {float32} raises
    # AssertionError (v2.10.0 dynamo/_defaults.py, _compiler.py); the precision is the model's.
    Generation(
        "2.10-2.11", (2, 10), (2, 11), "debugger_engine_profile", "model_dtype", "python_module",
        sources=("v2.10.0, v2.11.0 py/torch_tensorrt/dynamo/_defaults.py USE_EXPLICIT_TYPING",),
    ),
    # 2.12: DETAILED 'if self._debugger_config' (v2.12.0 conversion/_TRTInterpreter.py).
    Generation(
        "2.12", (2, 12), (2, 12), "debugger", "model_dtype", "python_module",
        sources=("v2.12.0 py/torch_tensorrt/dynamo/conversion/_TRTInterpreter.py",),
    ),
    # 2.13 removed PythonTorchTensorRTModule (PR #4222, "Python runtime rework"); compile()'s
    # use_python_runtime is deprecated and has no effect, and enabled_precisions is gone: the
    # runtime is the C++ one when libtorchtrt is installed, else torch-tensorrt's Python TRTEngine
    # (v2.13.0 dynamo/_compiler.py, runtime/_TorchTensorRTModule.py setup_engine, _TRTEngine.py).
    # main (2.14.0a0) is unchanged in all of this.
    Generation(
        "2.13-2.14", (2, 13), (2, 14), "debugger", "model_dtype", "torchtrt_module",
        sources=("v2.13.0 py/torch_tensorrt/dynamo/runtime/_TorchTensorRTModule.py",
                 "v2.13.0 py/torch_tensorrt/dynamo/runtime/_TRTEngine.py",
                 "main (2.14.0a0) same files"),
    ),
)

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?([^+]*)")


def parse_version(text: str) -> tuple[tuple[int, int], bool]:
    """``"2.4.0a0+abc"`` -> ``((2, 4), True)``: major.minor and whether it is a pre-release."""
    m = _VERSION.match(text or "")
    if m is None:
        raise WorkerConfigError(f"cannot read the torch-tensorrt version {text!r}")
    rest = m[4].lower()
    return (int(m[1]), int(m[2])), any(tag in rest for tag in ("a", "b", "rc", "dev"))


def detect(ttrt: Any) -> Generation:
    """The installed torch-tensorrt's generation, or a configuration error naming the range."""
    version = str(getattr(ttrt, "__version__", ""))
    mm, pre = parse_version(version)
    for gen in GENERATIONS:
        if gen.covers(mm, pre):
            return gen
    raise WorkerConfigError(
        f"torch-tensorrt {version} is outside the tested range {RANGE_TEXT}; install a release "
        "in that range (pip install 'jetpower[tensorrt]'), or use backend 'torch'"
    )


def need(obj: Any, attr: str, gen: Generation) -> Any:
    """``obj.attr``, or a configuration error saying this build lacks what its release has."""
    try:
        return getattr(obj, attr)
    except AttributeError:
        name = getattr(obj, "__name__", type(obj).__name__)
        raise WorkerConfigError(
            f"this torch-tensorrt build has no {name}.{attr}, which its release ({gen.name}) "
            "has; jetpower cannot drive it"
        ) from None


# -- compiling --------------------------------------------------------------------------------


def compile_kwargs(gen: Generation, base: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """``dynamo.compile`` keyword arguments: ``base`` plus what the generation needs."""
    kw = dict(base)
    if gen.precision == "enabled_precisions":
        kw["enabled_precisions"] = {dtype}
    if gen.runtime == "python_module":
        kw["use_python_runtime"] = True
    if gen.detail == "debug_kwarg":
        kw["debug"] = True
    return kw


@contextlib.contextmanager
def detail_context(gen: Generation, dynamo: Any, logging_dir: str) -> Iterator[None]:
    """Around ``compile``: what makes the builder use ProfilingVerbosity.DETAILED."""
    if gen.detail == "debug_kwarg":
        yield
        return
    debugger = need(dynamo, "Debugger", gen)
    # log_level, engine_builder_monitor, logging_dir: keywords of 2.8 to 2.14 (debug/_Debugger.py)
    kw: dict[str, Any] = {
        "log_level": "warning",
        "engine_builder_monitor": False,
        "logging_dir": logging_dir,
    }
    if gen.detail == "debugger_engine_profile":
        # with use_python_runtime any other profile_format raises ValueError (2.8-2.11 _compiler)
        kw |= {"save_engine_profile": True, "profile_format": "cudagraph"}
    with debugger(**kw):
        yield


def after_compile(gen: Generation, modules: list[tuple[str, Any]]) -> None:
    """Undo what compiling for detail attached to the engines (2.8-2.11: a stdout trt.Profiler)."""
    if gen.detail != "debugger_engine_profile":
        return
    for _, mod in modules:
        # disable_profiling() synchronises, drops the context and creates a fresh one
        need(mod, "disable_profiling", gen)()


def restore_log_level(gen: Generation) -> Callable[[], None]:
    """2.3-2.7: ``debug=True`` leaves the torch_tensorrt.dynamo logger at DEBUG; put it back."""
    import logging

    logger = logging.getLogger("torch_tensorrt.dynamo")
    level = logger.level
    if gen.detail != "debug_kwarg":
        return lambda: None
    return lambda: logger.setLevel(level)


# -- reaching the engines ---------------------------------------------------------------------


def engine_modules(gen: Generation, ttrt: Any, compiled: Any) -> list[tuple[str, Any]]:
    """Every TensorRT engine submodule of the compiled module, in module order."""
    runtime = need(ttrt.dynamo, "runtime", gen)
    cls_name = "PythonTorchTensorRTModule" if gen.runtime == "python_module" else (
        "TorchTensorRTModule"
    )
    cls = need(runtime, cls_name, gen)
    found = [(n, m) for n, m in compiled.named_modules() if isinstance(m, cls)]
    if not found and gen.runtime == "python_module":
        cpp = getattr(runtime, "TorchTensorRTModule", None)
        if cpp is not None and any(isinstance(m, cpp) for _, m in compiled.named_modules()):
            raise WorkerRunError(
                "the compiled module runs its engines on the C++ runtime although "
                "use_python_runtime=True was asked for: no IExecutionContext to profile"
            )
    return found


@dataclass
class EngineAccess:
    """One engine as the profiler sees it."""

    name: str
    module: Any
    context: Any  # the trt.IExecutionContext that runs when ``module`` is called
    via: str  # how the context was reached, for the result metadata
    close: Callable[[], None]

    def layer_info(self) -> str:
        return str(self.module.get_layer_info())


def open_engine(gen: Generation, ttrt: Any, name: str, mod: Any) -> EngineAccess:
    """Reach the execution context that calling ``mod`` runs."""
    if gen.runtime == "python_module":
        return EngineAccess(name, mod, need(mod, "context", gen),
                            "PythonTorchTensorRTModule.context", lambda: None)
    engine = need(mod, "engine", gen)
    features = need(ttrt, "ENABLED_FEATURES", gen)
    if not features.torch_tensorrt_runtime:
        # Python-only build: the module's engine is torch-tensorrt's Python TRTEngine
        return EngineAccess(name, mod, need(engine, "context", gen),
                            "TorchTensorRTModule.engine (Python TRTEngine).context", lambda: None)
    # C++ runtime: torch.classes.tensorrt.Engine keeps its IExecutionContext in C++.  For the
    # profiling pass the module runs a Python TRTEngine built from the same serialized engine
    # (_pack_engine_info() is the layout both runtimes read, v2.13.0 _serialized_engine_layout.py).
    try:
        from torch_tensorrt.dynamo.runtime._TRTEngine import TRTEngine
    except ImportError as e:
        raise WorkerConfigError(
            f"torch-tensorrt {gen.name} without torch_tensorrt.dynamo.runtime._TRTEngine: "
            f"cannot reach the engines' execution contexts ({e})"
        ) from e
    try:
        twin = TRTEngine(need(mod, "_pack_engine_info", gen)())
    except Exception as e:
        raise WorkerRunError(f"cannot build a Python TRTEngine for {name}: {e}") from e

    def forward(*inputs: Any) -> Any:
        return twin.execute(list(inputs))

    mod.forward = forward  # instance attribute: nn.Module.__call__ runs it instead

    def close() -> None:
        with contextlib.suppress(AttributeError):
            del mod.forward

    return EngineAccess(name, mod, twin.context,
                        "Python TRTEngine twin of the C++ engine (profiling pass only).context",
                        close)
