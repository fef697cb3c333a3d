"""Energy counters the isolation pass reads: NVML's total-energy counter, and a simulated one.

A counter returns the energy consumed since some origin, in uJ, as an integer that changes only
at the device's update instants (NVML on an H100/H200: every ~100 ms, in 1 mJ steps).  It may also
say what the device's clocks and temperature are (``conditions``), so that each replay is
recorded with them.

- :class:`NvmlCounter`: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded)
  through the ``pynvml`` binding (nvidia-ml-py) when it is importable, else through ctypes on
  ``libnvidia-ml.so.1`` ($JETPOWER_NVML_LIB).  Errors become :class:`CounterError` naming the call.
- :class:`SimulatedCounter`: integrates a known power over CLOCK_MONOTONIC (an idle power with an
  optional linear drift, plus the busy intervals the workload reports), and publishes the integral
  only every ``period_s``, rounded down to ``resolution_uj``, as NVML does.  It is what the
  known-answer tests and the CPU run of ``benchmarks/gpu/isolated.py`` measure; what it gives is
  never a measurement, and the result file says ``"simulated": true``.
"""

from __future__ import annotations

import ctypes
import math
import threading
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from jetpower.errors import WorkerError
from jetpower.timebase import monotonic_ns


class CounterError(WorkerError):
    """The energy counter cannot be opened or read."""

    exit_code = 3


class EnergyCounter(Protocol):
    """What the isolation pass needs from an energy counter."""

    name: str
    #: the counter's step, uJ
    resolution_uj: float
    #: True for a counter whose readings are not measurements
    simulated: bool

    def read_uj(self) -> int: ...
    def conditions(self) -> dict[str, float]: ...
    def describe(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


# -- NVML ---------------------------------------------------------------------------------------

_CLOCK_GRAPHICS, _CLOCK_SM, _CLOCK_MEM = 0, 1, 2
_TEMPERATURE_GPU = 0


class _CtypesNvml:
    """The few NVML calls the counter makes, through ctypes (when pynvml is not installed)."""

    def __init__(self, path: str) -> None:
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as e:
            raise CounterError(f"cannot load NVML ({path}): {e}") from e
        self._call("nvmlInit_v2")

    def _call(self, fn: str, *args: Any) -> None:
        rc = getattr(self.lib, fn)(*args)
        if rc != 0:
            self.lib.nvmlErrorString.restype = ctypes.c_char_p
            msg = self.lib.nvmlErrorString(rc)
            raise CounterError(f"NVML {fn} failed: {msg.decode() if msg else rc}")

    def handle(self, index: int, uuid: str | None) -> Any:
        h = ctypes.c_void_p()
        if uuid is not None:
            self._call("nvmlDeviceGetHandleByUUID", uuid.encode(), ctypes.byref(h))
        else:
            self._call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(index), ctypes.byref(h))
        return h

    def energy_mj(self, h: Any) -> int:
        v = ctypes.c_ulonglong()
        self._call("nvmlDeviceGetTotalEnergyConsumption", h, ctypes.byref(v))
        return int(v.value)

    def clock_mhz(self, h: Any, kind: int) -> int:
        v = ctypes.c_uint()
        self._call("nvmlDeviceGetClockInfo", h, ctypes.c_int(kind), ctypes.byref(v))
        return int(v.value)

    def temperature_c(self, h: Any) -> int:
        v = ctypes.c_uint()
        self._call("nvmlDeviceGetTemperature", h, ctypes.c_int(_TEMPERATURE_GPU), ctypes.byref(v))
        return int(v.value)

    def name(self, h: Any) -> str:
        buf = ctypes.create_string_buffer(96)
        self._call("nvmlDeviceGetName", h, buf, ctypes.c_uint(96))
        return buf.value.decode(errors="replace")

    def shutdown(self) -> None:
        self.lib.nvmlShutdown()


class _PyNvml:
    """The same calls through the ``pynvml`` module (nvidia-ml-py)."""

    def __init__(self, nv: Any) -> None:
        self.nv = nv
        self._wrap(nv.nvmlInit)

    def _wrap(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError as e:
            raise CounterError(f"NVML {getattr(fn, '__name__', fn)} failed: {e}") from e

    def handle(self, index: int, uuid: str | None) -> Any:
        if uuid is not None:
            return self._wrap(self.nv.nvmlDeviceGetHandleByUUID, uuid)
        return self._wrap(self.nv.nvmlDeviceGetHandleByIndex, index)

    def energy_mj(self, h: Any) -> int:
        return int(self._wrap(self.nv.nvmlDeviceGetTotalEnergyConsumption, h))

    def clock_mhz(self, h: Any, kind: int) -> int:
        return int(self._wrap(self.nv.nvmlDeviceGetClockInfo, h, kind))

    def temperature_c(self, h: Any) -> int:
        return int(self._wrap(self.nv.nvmlDeviceGetTemperature, h, _TEMPERATURE_GPU))

    def name(self, h: Any) -> str:
        n = self._wrap(self.nv.nvmlDeviceGetName, h)
        return n.decode() if isinstance(n, bytes) else str(n)

    def shutdown(self) -> None:
        self.nv.nvmlShutdown()


class NvmlCounter:
    """NVML's total-energy counter of one GPU (see the module docstring)."""

    name = "nvml"
    resolution_uj = 1000.0
    simulated = False

    def __init__(self, index: int = 0, uuid: str | None = None) -> None:
        try:
            import pynvml
        except ImportError:
            from jetpower._native import nvml_library  # the library the sampler loads

            self.api: Any = _CtypesNvml(nvml_library())
            self.binding = "ctypes"
        else:
            self.api = _PyNvml(pynvml)
            self.binding = "pynvml"
        self.h = self.api.handle(index, uuid)
        self.device_name = self.api.name(self.h)
        self.read_uj()  # fails here, with the call named, where the counter is not supported

    def read_uj(self) -> int:
        return self.api.energy_mj(self.h) * 1000

    def conditions(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, read in (
            ("sm_clock_mhz", lambda: self.api.clock_mhz(self.h, _CLOCK_SM)),
            ("mem_clock_mhz", lambda: self.api.clock_mhz(self.h, _CLOCK_MEM)),
            ("temperature_c", lambda: self.api.temperature_c(self.h)),
        ):
            try:
                out[key] = float(read())
            except CounterError:
                continue  # not every GPU answers every query; what answers is recorded
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "call": "nvmlDeviceGetTotalEnergyConsumption (mJ)",
            "binding": self.binding,
            "device_name": self.device_name,
            "resolution_uj": self.resolution_uj,
            "simulated": False,
        }

    def close(self) -> None:
        self.api.shutdown()


def cuda_counter(torch: Any) -> NvmlCounter:
    """The NVML counter of the GPU torch uses (matched by UUID, else by index)."""
    dev = torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(dev), "uuid", None)
    text = None if uuid is None else str(uuid)
    if text is not None and not text.startswith(("GPU-", "MIG-")):
        text = "GPU-" + text
    try:
        return NvmlCounter(dev, text)
    except CounterError:
        if text is None:
            raise
        return NvmlCounter(dev, None)


# -- simulated ----------------------------------------------------------------------------------


class SimulatedCounter:
    """A counter with a known power (see the module docstring); thread-safe."""

    name = "simulated"
    simulated = True

    def __init__(
        self,
        *,
        idle_w: float = 50.0,
        idle_drift_w_per_s: float = 0.0,
        period_s: float = 0.02,
        lag_periods: int = 0,
        resolution_uj: float = 1000.0,
        power_of: Callable[[str], float] | None = None,
        conditions_of: Callable[[float], dict[str, float]] | None = None,
        clock: Callable[[], int] = monotonic_ns,
    ) -> None:
        self.idle_w = idle_w
        self.drift = idle_drift_w_per_s
        self.period_ns = int(period_s * 1e9)
        self.lag = lag_periods
        self.resolution_uj = resolution_uj
        self.power_of = power_of
        self._cond = conditions_of
        self.clock = clock
        self.t0 = clock()
        self._lock = threading.Lock()
        self._busy: list[tuple[int, int, float]] = []  # (start, end, W above idle), not folded yet
        self._folded_uj = 0.0  # busy energy of intervals that ended before the last update
        self._k = -1  # the update whose value was published, and that value
        self._value = 0
        #: per label: [energy above idle, uJ; executions] of what was reported, the known truth
        self.truth: dict[str, list[float]] = {}

    def add_busy(
        self, start_ns: int, end_ns: int, watts: float, label: str = "", executions: int = 1
    ) -> None:
        """The workload was busy at ``watts`` above idle over ``[start, end]``."""
        with self._lock:
            self._busy.append((start_ns, end_ns, watts))
            t = self.truth.setdefault(label, [0.0, 0])
            t[0] += watts * (end_ns - start_ns) / 1e3
            t[1] += executions

    def observe(self, label: str, start_ns: int, end_ns: int, executions: int) -> None:
        """The pass ran ``label`` over ``[start, end]`` (counted when ``power_of`` is set)."""
        if self.power_of is not None:
            self.add_busy(start_ns, end_ns, self.power_of(label), label, executions)

    def truth_uj(self, label: str) -> float:
        """The energy above idle per execution of ``label`` that was reported (the true value)."""
        e, n = self.truth[label]
        return e / n

    def _idle_uj(self, t_ns: int) -> float:
        s = (t_ns - self.t0) / 1e9
        return (self.idle_w * s + 0.5 * self.drift * s * s) * 1e6

    def read_uj(self) -> int:
        """The integral up to the update instant ``lag_periods`` before the last one, fixed at
        the first read after that update.

        A workload that reports a chunk when it has finished is counted right if it reports
        within the lag; later reports count at a later update.
        """
        now = self.clock()
        k = max(0, (now - self.t0) // self.period_ns - self.lag)
        upd = self.t0 + k * self.period_ns
        with self._lock:
            if k == self._k:
                return self._value
            keep = []
            partial = 0.0
            for a, b, w in self._busy:
                if b <= upd:
                    self._folded_uj += w * (b - a) / 1e3
                else:
                    keep.append((a, b, w))
                    if a < upd:
                        partial += w * (upd - a) / 1e3
            self._busy = keep
            total = self._idle_uj(upd) + self._folded_uj + partial
            self._k = k
            self._value = int(math.floor(total / self.resolution_uj) * self.resolution_uj)
            return self._value

    def idle_w_at(self, t_ns: int) -> float:
        return self.idle_w + self.drift * (t_ns - self.t0) / 1e9

    def conditions(self) -> dict[str, float]:
        if self._cond is None:
            return {}
        return self._cond((self.clock() - self.t0) / 1e9)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "call": "simulated: a known power integrated over CLOCK_MONOTONIC",
            "resolution_uj": self.resolution_uj,
            "update_period_s": self.period_ns / 1e9,
            "lag_periods": self.lag,
            "idle_w": self.idle_w,
            "idle_drift_w_per_s": self.drift,
            "simulated": True,
        }

    def close(self) -> None:
        pass


def simulated_power(label: str) -> float:
    """A made-up but fixed power above idle for a layer name, 5..40 W (for simulated runs)."""
    return 5.0 + (zlib.crc32(label.encode()) % 3500) / 100.0
