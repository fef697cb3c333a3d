"""Raw ring records -> rail readings.

A record holds one integer per channel; a :class:`Decoder` knows which channels make which rail
and turns each record into a :class:`Reading`: the mid-point time of the read pass, per rail
(mV, mA, uW) with ``None`` for an invalid read, and the total power by the sensor's total rule.

A ``counter`` rail (RAPL) has no power reading: its power is the difference of its energy counter
between this sample and the previous valid one, over the monotonic time between them, with the
counter's wrap-around undone; the first sample of a stream has no power.  Rails with an energy
counter (RAPL, NVML) also carry the counter in uJ, from which :mod:`jetpower.acquire.energy`
takes a window's energy beside the integral of power.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from jetpower.sensors import SensorSet

if TYPE_CHECKING:
    from jetpower._native import Records

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: the power log's voltage column for sources that measure no voltage (NVML, RAPL)
NOMINAL_MV = 1000

_TO_UW = {"uW": 1, "mW": 1000, "W": 1_000_000}
_TO_UJ = {"uJ": 1, "mJ": 1000, "J": 1_000_000}


@dataclass(frozen=True, slots=True)
class Reading:
    t_ns: int  # mid-point of the read pass, CLOCK_MONOTONIC
    rails: tuple[tuple[int | None, int | None, float | None], ...]  # (mV, mA, uW) per rail
    total_uw: float | None
    log_mv: int | None  # the power log's two columns (see Decoder.log_columns_note)
    log_ma: float | None
    energy_uj: tuple[int | None, ...] = ()  # per rail: its energy counter in uJ (None: no counter)
    #: per rail: CLOCK_MONOTONIC (start, end) of the read of its reading channel (the current for
    #: v_x_i, else the power or the counter); None where the ring has no per-read stamps (v1) or
    #: the read was not attempted
    read_ns: tuple[tuple[int, int] | None, ...] = ()


class Decoder:
    """Decodes records of a sampler started on ``sensor.channels`` (in that order)."""

    def __init__(self, sensor: SensorSet) -> None:
        self.sensor = sensor
        index = {c.name: k for k, c in enumerate(sensor.channels)}
        self._rails = []
        self._stamp_of: list[int] = []  # per rail: the channel whose read stamps it carries
        self._energy: list[tuple[int, int, int | None]] = []  # (channel, to uJ, wrap in uJ)
        for r in sensor.rails:
            vi = index[r.voltage.name] if r.voltage else None
            ii = index[r.current.name] if r.current else None
            pi = index[r.power.name] if r.power else None
            scale = _TO_UW.get(r.power.unit, 1) if r.power else 1
            self._rails.append((vi, ii, pi, scale))
            main = ii if ii is not None else pi
            self._stamp_of.append(main if main is not None else index[r.energy.name]
                                  if r.energy is not None else -1)
            if r.energy is not None:
                escale = _TO_UJ[r.energy.unit]
                wrap = r.energy.wrap * escale if r.energy.wrap else None
                self._energy.append((index[r.energy.name], escale, wrap))
            else:
                self._energy.append((-1, 0, None))
        self._counter = tuple(r.derivation == "counter" for r in sensor.rails)
        self._prev: list[tuple[int, int] | None] = [None] * len(sensor.rails)
        labels = sensor.labels
        self._total = tuple(labels.index(n) for n in sensor.total.rails)
        # the power log needs mV and mA; sources that report power alone get an equivalent
        self._log_has_voltage = all(
            sensor.rails[k].voltage is not None and sensor.rails[k].current is not None
            for k in self._total
        )
        self._has_energy = tuple(r.energy is not None for r in sensor.rails)

    @property
    def counter_rails(self) -> tuple[str, ...]:
        """Labels of the rails with an energy counter."""
        return tuple(r.label for r in self.sensor.rails if r.energy is not None)

    def counter_wrap_uj(self, label: str) -> int | None:
        """The wrap of one rail's energy counter in uJ (None: it never wraps)."""
        k = self.sensor.labels.index(label)
        ci, _, wrap = self._energy[k]
        if ci < 0:
            raise ValueError(f"rail {label!r} has no energy counter")
        return wrap

    def _counter_power(self, k: int, t_ns: int, uj: int | None) -> float | None:
        """uW of a counter rail from the previous valid counter value (wrap-aware)."""
        if uj is None:
            return None
        prev = self._prev[k]
        self._prev[k] = (t_ns, uj)
        if prev is None or t_ns <= prev[0]:
            return None
        d = counter_delta(prev[1], uj, self._energy[k][2])
        return None if d is None else d * 1e9 / (t_ns - prev[0])

    @property
    def integration_rule(self) -> str:
        """"hold" when the total's power comes from energy counters alone, else "trapezoid"."""
        rails = [r for r in self.sensor.rails if r.label in self.sensor.total.rails]
        return "hold" if all(r.derivation == "counter" for r in rails) else "trapezoid"

    @property
    def log_columns_note(self) -> str:
        t = self.sensor.total
        if not self._log_has_voltage:
            return (
                f"no voltage reading ({' + '.join(t.rails)} report power): mV is a nominal "
                f"{NOMINAL_MV} (1 V) and mA is the total power in mW, so mV x mA is the total "
                "power in uW"
            )
        if not t.is_sum:
            return f"mV and mA of {t.rails[0]}, as read"
        return (
            f"no single total rail: mV is {t.rails[0]}'s voltage and mA is the sum of "
            f"{' + '.join(t.rails)} power divided by it, so mV x mA is the total power"
        )

    def decode_batch(self, records: Records) -> Batch:
        """Every record of ``records`` at once, in numpy: the same values as :meth:`decode`
        (which it replaces in the recorder), with the counter rails' state carried over."""
        nan = np.nan
        t_ns = (records.t_start_ns + records.t_end_ns) // 2
        values = records.values.astype(np.float64)
        valid = records.valid()

        def col(i: int | None) -> F64:
            if i is None:
                return np.full(t_ns.size, nan)
            return np.where(valid[:, i], values[:, i], nan)

        rails: list[tuple[F64, F64, F64]] = []
        energy: list[F64 | None] = []
        for k, (vi, ii, pi, scale) in enumerate(self._rails):
            mv, ma = col(vi), col(ii)
            ci, escale, wrap = self._energy[k]
            uj = col(ci) * escale if ci >= 0 else None
            energy.append(uj)
            if self._counter[k]:
                assert uj is not None
                uw = self._counter_power_batch(k, t_ns, uj, wrap)
            elif pi is not None:
                uw = col(pi) * scale
            else:
                uw = mv * ma
            rails.append((mv, ma, uw))
        total = np.sum([rails[k][2] for k in self._total], axis=0)  # NaN if any part is
        first = rails[self._total[0]]
        if not self._log_has_voltage:
            log_mv = np.full(t_ns.size, float(NOMINAL_MV))
            log_ma = total / NOMINAL_MV
        elif len(self._total) == 1:
            log_mv, log_ma = first[0], first[1]
        else:
            log_mv = first[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                log_ma = np.where(log_mv != 0, total / log_mv, nan)
        arr = getattr(records, "array", None)
        names = getattr(getattr(arr, "dtype", None), "names", None) or ()
        read_ns: list[tuple[I64, I64] | None] = []
        for c in self._stamp_of:  # ring v2: the start and end of each rail's read
            if arr is None or c < 0 or "read_start_ns" not in names:
                read_ns.append(None)
            else:
                read_ns.append((arr["read_start_ns"][:, c].astype(np.int64),
                                arr["read_end_ns"][:, c].astype(np.int64)))
        return Batch(t_ns, rails, energy if any(self._has_energy) else [None] * len(rails),
                     total, log_mv, log_ma, read_ns)

    def _counter_power_batch(self, k: int, t_ns: npt.NDArray[np.int64], uj: F64,
                             wrap: int | None) -> F64:
        """uW of counter rail k per record: the difference from the previous valid counter
        value (across batches), as :meth:`_counter_power` does record by record."""
        out = np.full(t_ns.size, np.nan)
        ok = np.flatnonzero(~np.isnan(uj))
        if not ok.size:
            return out
        t = t_ns[ok]
        v = uj[ok]
        prev = self._prev[k]
        pt = np.concatenate(([prev[0]], t[:-1])) if prev else np.concatenate(([0], t[:-1]))
        pv = np.concatenate(([prev[1]], v[:-1])) if prev else np.concatenate(([0.0], v[:-1]))
        d = v - pv
        d = np.where(d < 0, d + wrap, d) if wrap else np.where(d < 0, np.nan, d)
        dt = (t - pt).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(dt > 0, d * 1e9 / dt, np.nan)
        if not prev:
            p[0] = np.nan
        out[ok] = p
        self._prev[k] = (int(t[-1]), int(v[-1]))
        return out

    def decode(self, records: Iterable[tuple[int, ...]]) -> Iterator[Reading]:
        rails_spec = self._rails
        total_idx = self._total
        energy_spec = self._energy
        counter = self._counter
        any_energy = any(self._has_energy)
        stamps = _read_stamps(records, self._stamp_of)
        for n, rec in enumerate(records):
            valid = rec[3]
            vals = rec[4:]
            t_ns = (rec[1] + rec[2]) // 2
            rails: list[tuple[int | None, int | None, float | None]] = []
            energy: list[int | None] = []
            for k, (vi, ii, pi, scale) in enumerate(rails_spec):
                mv = vals[vi] if vi is not None and valid >> vi & 1 else None
                ma = vals[ii] if ii is not None and valid >> ii & 1 else None
                uj: int | None = None
                if any_energy:
                    ci, escale, _ = energy_spec[k]
                    uj = vals[ci] * escale if ci >= 0 and valid >> ci & 1 else None
                    energy.append(uj)
                if counter[k]:
                    uw = self._counter_power(k, t_ns, uj)
                elif pi is not None:
                    uw = float(vals[pi] * scale) if valid >> pi & 1 else None
                else:
                    uw = float(mv * ma) if mv is not None and ma is not None else None
                rails.append((mv, ma, uw))
            parts = [rails[k][2] for k in total_idx]
            total = None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]
            first = rails[total_idx[0]]
            log_mv: int | None
            log_ma: float | None
            if not self._log_has_voltage:
                log_mv, log_ma = NOMINAL_MV, None if total is None else total / NOMINAL_MV
            elif len(total_idx) == 1:
                log_mv, log_ma = first[0], None if first[1] is None else float(first[1])
            else:
                log_mv = first[0]
                log_ma = None if total is None or not log_mv else total / log_mv
            yield Reading(t_ns, tuple(rails), total, log_mv, log_ma, tuple(energy),
                          stamps[n] if stamps is not None else ())


def _read_stamps(records: Iterable[tuple[int, ...]], chans: list[int]
                 ) -> list[tuple[tuple[int, int] | None, ...]] | None:
    """Per record, per rail: (start, end) of its reading channel's read, from a ring v2 batch
    (:class:`jetpower._native.Records`); None for plain tuples (no per-read stamps)."""
    arr = getattr(records, "array", None)
    names = getattr(getattr(arr, "dtype", None), "names", None) or ()
    if arr is None or "read_start_ns" not in names:
        return None
    rs = arr["read_start_ns"].tolist()
    re_ = arr["read_end_ns"].tolist()
    out: list[tuple[tuple[int, int] | None, ...]] = []
    for a, b in zip(rs, re_):
        out.append(tuple((a[c], b[c]) if c >= 0 and (a[c] or b[c]) else None for c in chans))
    return out


class Batch(Sequence[Reading]):
    """The readings of one drained batch, as columns (numpy, NaN for an invalid value).

    Decoded in bulk by :meth:`Decoder.decode_batch`; it is also a sequence of :class:`Reading`
    (built on access), so record-by-record sinks keep working while bulk ones use the columns.
    ``rails[k]`` is (mV, mA, uW) of rail k, ``energy_uj[k]`` its counter (None: no counter).
    """

    def __init__(self, t_ns: npt.NDArray[np.int64], rails: list[tuple[F64, F64, F64]],
                 energy_uj: list[F64 | None], total_uw: F64, log_mv: F64, log_ma: F64,
                 read_ns: list[tuple[I64, I64] | None] | None = None) -> None:
        self.t_ns = t_ns
        #: per rail: (start, end) ns of its reading channel's read, 0 and 0 where not attempted;
        #: None without per-read stamps (ring v1)
        self.read_ns = read_ns if read_ns is not None else [None] * len(rails)
        self.rails = rails
        self.energy_uj = energy_uj
        self.total_uw = total_uw
        self.log_mv = log_mv
        self.log_ma = log_ma

    def __len__(self) -> int:
        return int(self.t_ns.size)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Reading]: ...

    def __getitem__(self, i: int | slice) -> Reading | Sequence[Reading]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)

        def num(a: F64) -> int | None:
            v = a[i]
            return None if np.isnan(v) else int(v)

        def flt(a: F64) -> float | None:
            v = a[i]
            return None if np.isnan(v) else float(v)

        return Reading(
            int(self.t_ns[i]),
            tuple((num(mv), num(ma), flt(uw)) for mv, ma, uw in self.rails),
            flt(self.total_uw), num(self.log_mv), flt(self.log_ma),
            tuple(None if e is None else num(e) for e in self.energy_uj)
            if any(e is not None for e in self.energy_uj) else (),
            tuple(None if s is None or not (s[0][i] or s[1][i]) else (int(s[0][i]), int(s[1][i]))
                  for s in self.read_ns) if any(s is not None for s in self.read_ns) else (),
        )

    def __iter__(self) -> Iterator[Reading]:
        return (self[k] for k in range(len(self)))


def counter_delta(prev: int, now: int, wrap: int | None) -> int | None:
    """``now - prev`` of a counter that goes back to 0 at ``wrap``; None for a reset (no wrap)."""
    d = now - prev
    if d >= 0:
        return d
    return d + wrap if wrap else None
