"""Raw ring records -> rail readings, and the files made of them.

A record holds one integer per channel file; a :class:`Decoder` knows which channels make which
rail and turns each record into a :class:`Reading`: the mid-point time of the read pass, per rail
(mV, mA, uW) with ``None`` for an invalid read, and the total power by the sensor's total rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from jetpower.sensors import SensorSet
from jetpower.timebase import Anchor, wall_text

SAMPLES_HEADER_LINE = "# jetpower-samples v1"

_TO_UW = {"uW": 1, "mW": 1000, "W": 1_000_000}


@dataclass(frozen=True, slots=True)
class Reading:
    t_ns: int  # mid-point of the read pass, CLOCK_MONOTONIC
    rails: tuple[tuple[int | None, int | None, float | None], ...]  # (mV, mA, uW) per rail
    total_uw: float | None
    log_mv: int | None  # the power log's two columns (see Decoder.log_columns_note)
    log_ma: float | None


class Decoder:
    """Decodes records of a sampler started on ``sensor.channels`` (in that order)."""

    def __init__(self, sensor: SensorSet) -> None:
        self.sensor = sensor
        index = {c.name: k for k, c in enumerate(sensor.channels)}
        self._rails = []
        for r in sensor.rails:
            vi = index[r.voltage.name] if r.voltage else None
            ii = index[r.current.name] if r.current else None
            pi = index[r.power.name] if r.power else None
            scale = _TO_UW.get(r.power.unit, 1) if r.power else 1
            self._rails.append((vi, ii, pi, scale))
        labels = sensor.labels
        self._total = tuple(labels.index(n) for n in sensor.total.rails)
        self.columns = ["t_ns"]
        for r in sensor.rails:
            if r.derivation == "v_x_i":
                self.columns += [f"{r.label}_mV", f"{r.label}_mA"]
            self.columns.append(f"{r.label}_uW")
        self.columns.append("total_uW")
        self._vxi = tuple(r.derivation == "v_x_i" for r in sensor.rails)

    @property
    def log_columns_note(self) -> str:
        t = self.sensor.total
        if not t.is_sum:
            return f"mV and mA of {t.rails[0]}, as read"
        return (
            f"no single total rail: mV is {t.rails[0]}'s voltage and mA is the sum of "
            f"{' + '.join(t.rails)} power divided by it, so mV x mA is the total power"
        )

    def decode(self, records: Iterable[tuple[int, ...]]) -> Iterator[Reading]:
        rails_spec = self._rails
        total_idx = self._total
        for rec in records:
            valid = rec[3]
            vals = rec[4:]
            rails: list[tuple[int | None, int | None, float | None]] = []
            for vi, ii, pi, scale in rails_spec:
                mv = vals[vi] if vi is not None and valid >> vi & 1 else None
                ma = vals[ii] if ii is not None and valid >> ii & 1 else None
                if pi is not None:
                    uw = float(vals[pi] * scale) if valid >> pi & 1 else None
                else:
                    uw = float(mv * ma) if mv is not None and ma is not None else None
                rails.append((mv, ma, uw))
            parts = [rails[k][2] for k in total_idx]
            total = None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]
            first = rails[total_idx[0]]
            if len(total_idx) == 1:
                log_mv, log_ma = first[0], None if first[1] is None else float(first[1])
            else:
                log_mv = first[0]
                log_ma = None if total is None or not log_mv else total / log_mv
            yield Reading((rec[1] + rec[2]) // 2, tuple(rails), total, log_mv, log_ma)

    def csv_header(self) -> str:
        return f"{SAMPLES_HEADER_LINE}\n{','.join(self.columns)}\n"

    def csv_row(self, r: Reading) -> str:
        cells = [str(r.t_ns)]
        for (mv, ma, uw), vxi in zip(r.rails, self._vxi):
            if vxi:
                cells.append("" if mv is None else str(mv))
                cells.append("" if ma is None else str(ma))
            cells.append("" if uw is None else f"{uw:.0f}")
        cells.append("" if r.total_uw is None else f"{r.total_uw:.0f}")
        return ",".join(cells) + "\n"


def power_log_line(r: Reading, anchor: Anchor) -> str | None:
    """One line of ``<model>_power_log.log``; ``None`` when the total could not be read."""
    if r.log_mv is None or r.log_ma is None:
        return None
    ma = r.log_ma
    ma_text = str(int(ma)) if ma == int(ma) else f"{ma:.3f}"
    return f"{wall_text(r.t_ns, anchor)},{r.log_mv},{ma_text}\n"


class Integrator:
    """Energy of a power series: trapezoid over monotonic time, samples inside the window only.

    Inclusion rule: a sample counts when ``start_ns <= t_ns <= end_ns``; the integral runs from the
    first to the last such sample (no extrapolation to the window's edges).  A missing reading
    breaks the series: the segment across it is not integrated.
    """

    __slots__ = ("count", "energy_uj", "first_ns", "invalid", "last_ns", "prev", "sum_uw")

    def __init__(self) -> None:
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
            self.energy_uj += (uw + pp) / 2 * (t_ns - pt) / 1e9
        self.prev = (t_ns, uw)

    @property
    def mean_uw(self) -> float | None:
        return self.sum_uw / self.count if self.count else None

    @property
    def span_s(self) -> float:
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9
