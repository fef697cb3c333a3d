"""The one module that imports the compiled ``jetpower._sampler``.

It checks arguments, turns return codes and errno into :class:`SamplerError`, and copies data out
of C memory.  Nothing else in jetpower touches ``ffi`` or ``lib``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jetpower.errors import SamplerError

if TYPE_CHECKING:
    import numpy as np

try:
    from jetpower._sampler import ffi, lib
except ImportError as e:  # pragma: no cover - only without a build
    raise SamplerError(
        "the compiled sampler jetpower._sampler is missing: install jetpower with "
        "'pip install .' (it needs a C compiler and cffi)"
    ) from e

RING_VERSION: int = lib.JP_RING_VERSION
MAX_CHANNELS: int = lib.JP_MAX_CHANNELS
#: the one rate range of jetpower, from the C header: a rate is 0 or in [MIN_RATE_HZ,
#: MAX_RATE_HZ].  Rate 0 makes the C loop pace at MAX_RATE_HZ (it never free-runs); callers that
#: mean "each new value once" resolve 0 to the source's change period before they start it.
MAX_RATE_HZ: int = lib.JP_MAX_RATE_HZ
MIN_RATE_HZ: int = lib.JP_MIN_RATE_HZ
_ERRLEN = 512


def record_size(nchan: int) -> int:
    """Bytes of one ring record of ``nchan`` channels."""
    return int(lib.jp_record_size(nchan))


def record_dtype(nchan: int) -> np.dtype:
    """The numpy dtype of one ring record of ``nchan`` channels (ring version 2), field by field
    the C record: every field 8 bytes, little-endian, no padding.

    ``seq`` (uint64), ``t_start_ns`` and ``t_end_ns`` (int64, CLOCK_MONOTONIC around the pass),
    ``valid_mask`` (uint64, bit i: channel i valid), then per channel, as sub-arrays of shape
    ``(nchan,)``: ``values`` (int64, the channel's unit), ``read_start_ns`` and ``read_end_ns``
    (int64, CLOCK_MONOTONIC around that channel's read; for ``nvml:`` channels the poller's NVML
    call, which may precede ``t_start_ns``; 0 and 0 when no read was attempted, i.e. the channel
    is gone).
    """
    import numpy as np  # here, not at import: the sampler child never needs it

    dt = np.dtype([
        ("seq", "<u8"), ("t_start_ns", "<i8"), ("t_end_ns", "<i8"), ("valid_mask", "<u8"),
        ("values", "<i8", (nchan,)), ("read_start_ns", "<i8", (nchan,)),
        ("read_end_ns", "<i8", (nchan,)),
    ])
    assert dt.itemsize == record_size(nchan), "record_dtype disagrees with jp_sampler.h"
    return dt

STATE_NAMES = {
    lib.JP_STATE_INIT: "init",
    lib.JP_STATE_RUNNING: "running",
    lib.JP_STATE_STOPPED: "stopped",
    lib.JP_STATE_FAILED: "failed",
}

SCHED_NAMES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE"}


#: where the NVML library comes from: the environment names it (tests point it at a fake)
NVML_LIB_ENV = "JETPOWER_NVML_LIB"
NVML_LIB_DEFAULT = "libnvidia-ml.so.1"
NVML_NOT_SUPPORTED = 3
_NVML_MAX_DEVICES = 64


def nvml_library() -> str:
    """The NVML library path this process loads: ``$JETPOWER_NVML_LIB`` or the driver's soname."""
    return os.environ.get(NVML_LIB_ENV) or NVML_LIB_DEFAULT


def _uses_nvml(paths: Sequence[str]) -> bool:
    return any(str(p).startswith("nvml:") for p in paths)


def _select_nvml(paths: Sequence[str]) -> None:
    if _uses_nvml(paths):
        lib.jp_nvml_set_library(os.fsencode(nvml_library()))


def nvml_return_name(rc: int) -> str:
    """NVML's name of a return code, e.g. ``NVML_ERROR_NOT_SUPPORTED``."""
    return ffi.string(lib.jp_nvml_return_name(rc)).decode()


@dataclass(frozen=True, slots=True)
class NvmlDevice:
    """What one GPU answered at discovery: NVML return code and value per query (mW, mJ)."""

    index: int
    name: str
    handle_rc: int
    instant_rc: int
    usage_rc: int
    energy_rc: int
    instant_mw: int | None
    usage_mw: int | None
    energy_mj: int | None


def nvml_probe(libpath: str | None = None) -> list[NvmlDevice]:
    """Load NVML, ask every GPU for instant power, power usage and the energy counter.

    Raises :class:`SamplerError` when the library cannot be loaded or initialised.
    """
    path = libpath or nvml_library()
    out = ffi.new("struct jp_nvml_device[]", _NVML_MAX_DEVICES)
    err = ffi.new("char[]", _ERRLEN)
    n = lib.jp_nvml_probe(os.fsencode(path), out, _NVML_MAX_DEVICES, err, _ERRLEN)
    if n < 0:
        raise SamplerError(ffi.string(err).decode(errors="replace"))
    devices = []
    for i in range(min(n, _NVML_MAX_DEVICES)):
        d = out[i]
        devices.append(NvmlDevice(
            index=i,
            name=ffi.string(d.name).decode(errors="replace") if d.name_rc == 0 else f"GPU {i}",
            handle_rc=d.handle_rc, instant_rc=d.instant_rc, usage_rc=d.usage_rc,
            energy_rc=d.energy_rc,
            instant_mw=d.instant_mw if d.instant_rc == 0 else None,
            usage_mw=d.usage_mw if d.usage_rc == 0 else None,
            energy_mj=d.energy_mj if d.energy_rc == 0 else None,
        ))
    return devices


def _cstrings(items: Sequence[str]) -> tuple[list[object], object]:
    keep = [ffi.new("char[]", os.fsencode(s)) for s in items]
    return keep, ffi.new("const char *[]", keep)


def run_loop(
    ring_path: Path,
    paths: Sequence[str],
    names: Sequence[str],
    units: Sequence[str],
    *,
    capacity: int,
    rate_hz: float,
    max_samples: int = 0,
    max_seconds: float = 0.0,
    install_signals: bool = True,
) -> None:
    """Run the C sampling loop in this thread (the GIL is released) until stopped.

    ``rate_hz``: 0 or MIN_RATE_HZ..MAX_RATE_HZ, checked by the C side (0 paces at MAX_RATE_HZ).
    Stops on SIGTERM/SIGINT when ``install_signals`` (the previous handlers are restored), after
    ``max_samples`` records or ``max_seconds`` (0: no limit), whichever comes first.
    """
    n = len(paths)
    if not 1 <= n <= MAX_CHANNELS:
        raise SamplerError(f"{n} channels; the sampler takes 1 to {MAX_CHANNELS}")
    if not (len(names) == len(units) == n):
        raise SamplerError("paths, names and units must have the same length")
    if capacity < 2:
        raise SamplerError(f"ring capacity {capacity} is too small (at least 2 records)")
    _select_nvml(paths)
    keep_p, c_paths = _cstrings(paths)
    keep_n, c_names = _cstrings(names)
    keep_u, c_units = _cstrings(units)
    err = ffi.new("char[]", _ERRLEN)
    rc = lib.jp_sampler_run(
        os.fsencode(ring_path), c_paths, c_names, c_units, n, capacity, float(rate_hz),
        max_samples, round(max_seconds * 1e9), int(install_signals), err, _ERRLEN,
    )
    del keep_p, keep_n, keep_u
    if rc != 0:
        raise SamplerError(ffi.string(err).decode(errors="replace") or os.strerror(-rc))


class ChannelLike(Protocol):
    """What the loop needs of a channel (``jetpower.sensors.Channel`` is one)."""

    @property
    def path(self) -> object: ...
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...


def run_channels(ring_path: Path, channels: Sequence[ChannelLike], **kwargs: Any) -> None:
    """:func:`run_loop` over ``channels``, in their order."""
    run_loop(ring_path, [str(c.path) for c in channels], [c.name for c in channels],
             [c.unit for c in channels], **kwargs)


@dataclass(frozen=True, slots=True)
class RingInfo:
    """The static part of a ring header."""

    version: int
    nchan: int
    capacity: int
    record_size: int
    rate_hz: float
    period_ns: int
    anchor_realtime_ns: int
    anchor_monotonic_ns: int
    anchor_error_ns: int
    start_monotonic_ns: int
    writer_pid: int
    cpu: int
    sched_policy: str
    sched_priority: int
    names: tuple[str, ...]
    units: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Counters:
    """The live counters of a ring header."""

    state: str
    samples: int
    missed_deadlines: int
    overruns: int
    read_errors: tuple[int, ...]
    failing: tuple[bool, ...]
    gone: tuple[bool, ...]
    stop_signal: int
    stop_monotonic_ns: int
    rate_changes: int


class Records:
    """A batch of records copied out of the ring in one go.

    ``array`` is a numpy structured array of :func:`record_dtype` (one element per record, in
    sequence order, consecutive ``seq``); the properties are views of its fields.  Iterating
    gives the version-1 view, one tuple ``(seq, t_start_ns, t_end_ns, valid_mask, *values)`` per
    record, for callers that decode record by record.
    """

    __slots__ = ("array", "nchan")

    def __init__(self, array: np.ndarray, nchan: int) -> None:
        self.array = array
        self.nchan = nchan

    def __len__(self) -> int:
        return len(self.array)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        import numpy as np

        width = self.array.dtype.itemsize // 8  # every field is 8 bytes
        flat = self.array.view(np.int64).reshape(len(self.array), width)
        return map(tuple, flat[:, : 4 + self.nchan].tolist())

    @property
    def seq(self) -> np.ndarray:
        return self.array["seq"]

    @property
    def t_start_ns(self) -> np.ndarray:
        return self.array["t_start_ns"]

    @property
    def t_end_ns(self) -> np.ndarray:
        return self.array["t_end_ns"]

    @property
    def valid_mask(self) -> np.ndarray:
        return self.array["valid_mask"]

    @property
    def values(self) -> np.ndarray:
        """``(len, nchan)`` int64."""
        return self.array["values"]

    @property
    def read_start_ns(self) -> np.ndarray:
        """``(len, nchan)`` int64."""
        return self.array["read_start_ns"]

    @property
    def read_end_ns(self) -> np.ndarray:
        """``(len, nchan)`` int64."""
        return self.array["read_end_ns"]

    def valid(self) -> np.ndarray:
        """``(len, nchan)`` bool: channel i's value is a good reading."""
        import numpy as np

        bits = np.arange(self.nchan, dtype=np.uint64)
        return ((self.valid_mask[:, None] >> bits) & np.uint64(1)).astype(bool)


class RingReader:
    """Reads a sampler's ring-buffer file; the acquire side of the protocol lives in C."""

    def __init__(self, path: Path) -> None:
        # numpy is imported by the reading side only (the sampler child never needs it, nor its
        # BLAS threads), and here, at open, not in the first drain: that import takes ~0.15 s
        import numpy  # noqa: F401

        err = ffi.new("char[]", _ERRLEN)
        r = lib.jp_reader_open(os.fsencode(path), err, _ERRLEN)
        if r == ffi.NULL:
            raise SamplerError(ffi.string(err).decode(errors="replace"))
        self._r = r
        self._counters = ffi.new("struct jp_counters *")
        self._info: RingInfo | None = None
        self._dtype: np.dtype | None = None
        self.path = path

    def close(self) -> None:
        if self._r is not None:
            lib.jp_reader_close(self._r)
            self._r = None

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        """True once the header is complete; raises if the file is not a ring we can read."""
        err = ffi.new("char[]", _ERRLEN)
        rc = lib.jp_reader_check(self._r, err, _ERRLEN)
        if rc < 0:
            raise SamplerError(f"{self.path}: {ffi.string(err).decode(errors='replace')}")
        return rc == 1

    @property
    def info(self) -> RingInfo:
        if self._info is None:
            if not self.ready():
                raise SamplerError(f"{self.path}: the ring header is not written yet")
            h = lib.jp_reader_header(self._r)
            n = h.nchan
            self._info = RingInfo(
                version=h.version, nchan=n, capacity=h.capacity, record_size=h.record_size,
                rate_hz=h.rate_hz, period_ns=h.period_ns,
                anchor_realtime_ns=h.anchor_realtime_ns,
                anchor_monotonic_ns=h.anchor_monotonic_ns, anchor_error_ns=h.anchor_error_ns,
                start_monotonic_ns=h.start_monotonic_ns, writer_pid=h.writer_pid, cpu=h.cpu,
                sched_policy=SCHED_NAMES.get(h.sched_policy, str(h.sched_policy)),
                sched_priority=h.sched_priority,
                names=tuple(ffi.string(h.names[i]).decode() for i in range(n)),
                units=tuple(ffi.string(h.units[i]).decode() for i in range(n)),
            )
        return self._info

    def counters(self) -> Counters:
        c = self._counters
        lib.jp_reader_counters(self._r, c)
        n = self.info.nchan
        return Counters(
            state=STATE_NAMES.get(c.state, str(c.state)),
            samples=c.seq,
            missed_deadlines=c.missed_deadlines,
            overruns=c.overruns,
            read_errors=tuple(c.read_errors[i] for i in range(n)),
            failing=tuple(bool(c.failing_mask >> i & 1) for i in range(n)),
            gone=tuple(bool(c.gone_mask >> i & 1) for i in range(n)),
            stop_signal=c.stop_signal,
            stop_monotonic_ns=c.stop_monotonic_ns,
            rate_changes=c.rate_changes,
        )

    @property
    def position(self) -> int:
        """Index of the next record this reader will return."""
        return int(lib.jp_reader_position(self._r))

    def request_rate(self, rate_hz: float) -> None:
        """Ask the sampler to pace at ``rate_hz`` from its next pass on (0: MAX_RATE_HZ).

        The C side turns Hz into its period and refuses a rate out of range.
        """
        err = ffi.new("char[]", _ERRLEN)
        if lib.jp_reader_request_rate(self._r, float(rate_hz), err, _ERRLEN) != 0:
            raise SamplerError(ffi.string(err).decode(errors="replace"))

    def current_rate(self) -> float:
        """The pace in force, in Hz (rate 0 shows as MAX_RATE_HZ)."""
        return float(lib.jp_reader_header(self._r).rate_hz)

    def drain(self, max_records: int = 65536) -> tuple[Records, int]:
        """Copy out the records published since the last call (at most ``max_records``), in one
        C copy into a numpy array: ``(records, lost)``.

        ``lost`` counts records overwritten before this reader got to them; they are also added to
        the header's overrun counter, never returned as data.
        """
        import numpy as np

        info = self.info
        if self._dtype is None:
            self._dtype = record_dtype(info.nchan)
        want = min(int(lib.jp_reader_pending(self._r)), max_records)
        if want <= 0:
            return Records(np.empty(0, self._dtype), info.nchan), 0
        out = np.empty(want, self._dtype)
        lost = ffi.new("uint64_t *")
        n = int(lib.jp_reader_drain(self._r, ffi.from_buffer(out), want, lost))
        return Records(out[:n], info.nchan), int(lost[0])


def time_reads(path: str, n: int) -> list[int]:
    """Per-read cost of ``n`` reads of one channel (a file or an ``nvml:`` channel), in ns."""
    _select_nvml([path])
    out = ffi.new("int64_t[]", n)
    rc = lib.jp_time_reads(os.fsencode(path), n, out)
    if rc < 0:
        raise SamplerError(f"cannot read {path}: {os.strerror(-rc)}")
    return list(out)


def bench_pread_loop(paths: Sequence[str], seconds: float) -> int:
    keep, c_paths = _cstrings(paths)
    rc = int(lib.jp_bench_pread_loop(c_paths, len(paths), int(seconds * 1e9)))
    del keep
    if rc < 0:
        raise SamplerError(f"bare read loop failed: {os.strerror(-rc)}")
    return rc


def bench_sample_loop(paths: Sequence[str], seconds: float, capacity: int = 4096) -> int:
    """Passes the sampler's own pass function makes over ``paths`` in ``seconds``, free-running
    into a private ring (the loop itself never free-runs)."""
    keep, c_paths = _cstrings(paths)
    rc = int(lib.jp_bench_sample_loop(c_paths, len(paths), capacity, int(seconds * 1e9)))
    del keep
    if rc < 0:
        raise SamplerError(f"sample-pass loop failed: {os.strerror(-rc)}")
    return rc


def bench_sleep_loop(period_ns: int, n: int) -> tuple[list[int], int]:
    out = ffi.new("int64_t[]", n)
    missed = int(lib.jp_bench_sleep_loop(period_ns, n, out))
    return list(out), missed


_FAULT_POINTS = {"poller": lib.JP_FAULT_POLLER}


def inject_fault_for_tests(point: str, errno_value: int) -> None:
    """Tests only: make the next attempt at ``point`` ("poller": starting the NVML poller
    thread) in this process fail with ``errno_value`` (0 clears it)."""
    lib.jp_test_inject_fault(_FAULT_POINTS[point], errno_value)
