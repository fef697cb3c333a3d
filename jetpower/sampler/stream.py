"""Raw ring records -> rail readings, and the files made of them.

A record holds one integer per channel; a :class:`Decoder` knows which channels make which rail
and turns each record into a :class:`Reading`: the mid-point time of the read pass, per rail
(mV, mA, uW) with ``None`` for an invalid read, and the total power by the sensor's total rule.

A ``counter`` rail (RAPL) has no power reading: its power is the difference of its energy counter
between this sample and the previous valid one, over the monotonic time between them, with the
counter's wrap-around undone; the first sample of a stream has no power.  Rails with an energy
counter (RAPL, NVML) also carry the counter in uJ, from which :class:`CounterEnergy` takes a
window's energy beside the trapezoid of :class:`Integrator`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from jetpower.sensors import SensorSet
from jetpower.timebase import Anchor, wall_text

SAMPLES_HEADER_LINE = "# jetpower-samples v1"
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


class Decoder:
    """Decodes records of a sampler started on ``sensor.channels`` (in that order)."""

    def __init__(self, sensor: SensorSet) -> None:
        self.sensor = sensor
        index = {c.name: k for k, c in enumerate(sensor.channels)}
        self._rails = []
        self._energy: list[tuple[int, int, int | None]] = []  # (channel, to uJ, wrap in uJ)
        for r in sensor.rails:
            vi = index[r.voltage.name] if r.voltage else None
            ii = index[r.current.name] if r.current else None
            pi = index[r.power.name] if r.power else None
            scale = _TO_UW.get(r.power.unit, 1) if r.power else 1
            self._rails.append((vi, ii, pi, scale))
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
        self.columns = ["t_ns"]
        for r in sensor.rails:
            if r.derivation == "v_x_i":
                self.columns += [f"{r.label}_mV", f"{r.label}_mA"]
            self.columns.append(f"{r.label}_uW")
            if r.energy is not None:
                self.columns.append(f"{r.label}_uJ")
        self.columns.append("total_uW")
        self._vxi = tuple(r.derivation == "v_x_i" for r in sensor.rails)
        self._has_energy = tuple(r.energy is not None for r in sensor.rails)

    @property
    def counter_rails(self) -> tuple[str, ...]:
        """Labels of the rails with an energy counter."""
        return tuple(r.label for r in self.sensor.rails if r.energy is not None)

    def counter_energy(self, label: str) -> CounterEnergy:
        """A :class:`CounterEnergy` for one rail's counter (feed it ``Reading.energy_uj[k]``)."""
        k = self.sensor.labels.index(label)
        ci, _, wrap = self._energy[k]
        if ci < 0:
            raise ValueError(f"rail {label!r} has no energy counter")
        return CounterEnergy(wrap)

    def _counter_power(self, k: int, t_ns: int, uj: int | None) -> float | None:
        """uW of a counter rail from the previous valid counter value (wrap-aware)."""
        if uj is None:
            return None
        prev = self._prev[k]
        self._prev[k] = (t_ns, uj)
        if prev is None or t_ns <= prev[0]:
            return None
        d = _counter_delta(prev[1], uj, self._energy[k][2])
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

    def decode(self, records: Iterable[tuple[int, ...]]) -> Iterator[Reading]:
        rails_spec = self._rails
        total_idx = self._total
        energy_spec = self._energy
        counter = self._counter
        any_energy = any(self._has_energy)
        for rec in records:
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
            yield Reading(t_ns, tuple(rails), total, log_mv, log_ma, tuple(energy))

    def csv_header(self) -> str:
        return f"{SAMPLES_HEADER_LINE}\n{','.join(self.columns)}\n"

    def csv_row(self, r: Reading) -> str:
        cells = [str(r.t_ns)]
        for k, ((mv, ma, uw), vxi) in enumerate(zip(r.rails, self._vxi)):
            if vxi:
                cells.append("" if mv is None else str(mv))
                cells.append("" if ma is None else str(ma))
            cells.append("" if uw is None else f"{uw:.0f}")
            if self._has_energy[k]:
                uj = r.energy_uj[k] if k < len(r.energy_uj) else None
                cells.append("" if uj is None else str(uj))
        cells.append("" if r.total_uw is None else f"{r.total_uw:.0f}")
        return ",".join(cells) + "\n"


def power_log_line(r: Reading, anchor: Anchor) -> str | None:
    """One line of ``<model>_power_log.log``; ``None`` when the total could not be read."""
    if r.log_mv is None or r.log_ma is None:
        return None
    ma = r.log_ma
    ma_text = str(int(ma)) if ma == int(ma) else f"{ma:.3f}"
    return f"{wall_text(r.t_ns, anchor)},{r.log_mv},{ma_text}\n"


#: how a power series is integrated: "trapezoid" for power sampled at instants; "hold" for power
#: derived from an energy counter's differences, which is the mean over (previous sample, this
#: sample] -- integrated as such it gives back exactly the counter's energy
INTEGRATION_RULES = ("trapezoid", "hold")


class Integrator:
    """Energy of a power series over monotonic time, samples inside the window only.

    Inclusion rule: a sample counts when ``start_ns <= t_ns <= end_ns``; the integral runs from the
    first to the last such sample (no extrapolation to the window's edges).  A missing reading
    breaks the series: the segment across it is not integrated.  ``rule``: see
    :data:`INTEGRATION_RULES`.
    """

    __slots__ = ("count", "energy_uj", "first_ns", "hold", "invalid", "last_ns", "prev", "sum_uw")

    def __init__(self, rule: str = "trapezoid") -> None:
        if rule not in INTEGRATION_RULES:
            raise ValueError(f"integration rule {rule!r}: expected one of {INTEGRATION_RULES}")
        self.hold = rule == "hold"
        self.count = 0
        self.invalid = 0
        self.sum_uw = 0.0
        self.energy_uj = 0.0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.prev: tuple[int, float] | None = None

    def add(self, t_ns: int, uw: float | None) -> None:
        if uw is None:
            self.invalid += 1
            self.prev = None
            return
        if self.first_ns is None:
            self.first_ns = t_ns
        self.last_ns = t_ns
        self.count += 1
        self.sum_uw += uw
        if self.prev is not None:
            pt, pp = self.prev
            height = uw if self.hold else (uw + pp) / 2
            self.energy_uj += height * (t_ns - pt) / 1e9
        self.prev = (t_ns, uw)

    @property
    def mean_uw(self) -> float | None:
        return self.sum_uw / self.count if self.count else None

    @property
    def span_s(self) -> float:
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9


def _counter_delta(prev: int, now: int, wrap: int | None) -> int | None:
    """``now - prev`` of a counter that goes back to 0 at ``wrap``; None for a reset (no wrap)."""
    d = now - prev
    if d >= 0:
        return d
    return d + wrap if wrap else None


class CounterEnergy:
    """Energy of a window from an energy counter: last minus first sample inside it, wrap-aware.

    Same inclusion rule as :class:`Integrator`: samples with ``start_ns <= t_ns <= end_ns``, from
    the first to the last such sample.  The counter difference is summed step by step so that
    any number of wrap-arounds is undone, provided two consecutive valid samples are less than
    one wrap apart (RAPL: minutes even at full load).  A missing reading does not break the
    series (the next difference spans it); a counter that goes back without a known wrap (a
    driver reload) is counted in ``resets`` and that step is left out.
    """

    __slots__ = (
        "count", "energy_uj", "first_ns", "invalid", "last_ns", "prev", "resets", "wrap_uj",
    )

    def __init__(self, wrap_uj: int | None = None) -> None:
        self.wrap_uj = wrap_uj
        self.count = 0
        self.invalid = 0
        self.resets = 0
        self.energy_uj = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.prev: int | None = None

    def add(self, t_ns: int, counter_uj: int | None) -> None:
        if counter_uj is None:
            self.invalid += 1
            return
        if self.prev is not None:
            d = _counter_delta(self.prev, counter_uj, self.wrap_uj)
            if d is None:
                self.resets += 1
            else:
                self.energy_uj += d
        if self.first_ns is None:
            self.first_ns = t_ns
        self.last_ns = t_ns
        self.count += 1
        self.prev = counter_uj

    @property
    def span_s(self) -> float:
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9

    @property
    def mean_uw(self) -> float | None:
        """Mean power over the span (energy / time), None with fewer than two samples."""
        return self.energy_uj / self.span_s if self.count > 1 and self.span_s > 0 else None
