"""A simulated INA3221: its conversion sequence on a drifting clock, window means, quantisation.

The chip converts the enabled channels' shunt and bus voltages back to back, in the order
CH1 shunt, CH1 bus, CH2 shunt, ... (``_ina3221``).  Each conversion's result is the mean of its
input over the conversion's window, which is the interval since the previous conversion ended;
it is written to its file when the conversion ends and held until that slot's next conversion.
The chip's oscillator runs ``offset`` fast or slow (drawn from the seed, within +/-3 %) and
drifts sinusoidally (temperature-like) by ``drift`` around it.  Quantisation: the shunt register
counts 40 uV (8 mA through 5 mOhm), the bus register 8 mV; a little ADC noise is added before
rounding, as on a real chip.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetpower.sensors import _ina3221
from jetpower.sensors._ina3221 import BUS_LSB_MV, SHUNT_LSB_UV, ChipConfig

OFFSET_MAX = 0.03
DRIFT_AMPLITUDE = 0.004
DRIFT_PERIOD_S = 180.0
SHUNT_NOISE_UV = 8.0  # 0.2 LSB
BUS_NOISE_MV = 2.0
SOURCE_MOHM = 20.0  # supply resistance: the bus voltage sags with the current


@dataclass(frozen=True, slots=True)
class SimRail:
    label: str
    channel: int  # 1..3
    idle_mw: float
    share: float  # the fraction of the board's net power this rail carries
    supply_mv: float
    shunt_uohm: int


class Oscillator:
    """The chip's clock rate relative to nominal: ``1 + offset + drift x sin(2 pi t / P + phi)``."""

    def __init__(self, rng: random.Random, t0_ns: int, *, offset: float | None = None,
                 drift: float = DRIFT_AMPLITUDE, period_s: float = DRIFT_PERIOD_S) -> None:
        self.offset = rng.uniform(-OFFSET_MAX, OFFSET_MAX) if offset is None else offset
        self.drift = drift
        self.period_s = period_s
        self.phi = rng.uniform(0.0, 2 * math.pi)
        self.t0_ns = t0_ns

    def factor(self, t_ns: int) -> float:
        """Conversion durations are nominal x this (> 1: the chip runs slow)."""
        x = (t_ns - self.t0_ns) / 1e9 / self.period_s
        return 1.0 + self.offset + self.drift * math.sin(2 * math.pi * x + self.phi)

    def describe(self) -> dict[str, Any]:
        return {"model": "duration = nominal x (1 + offset + drift x sin(2 pi (t - t0_ns) / "
                         "(period_s x 1e9) + phase_rad))",
                "offset": self.offset, "drift": self.drift, "period_s": self.period_s,
                "phase_rad": self.phi, "t0_ns": self.t0_ns}


class Sequence:
    """The chip's conversions in order: (index, slot, window start ns, window end ns)."""

    def __init__(self, chip: ChipConfig, osc: Oscillator, t_start_ns: int,
                 phase: float) -> None:
        self.chip = chip
        self.osc = osc
        self.window_ns = chip.window_us * 1000
        self.k = 0
        self.start = t_start_ns
        self.end = t_start_ns + round(phase * self.window_ns * osc.factor(t_start_ns))
        self.first_end = self.end

    @property
    def slot(self) -> int:
        return self.k % self.chip.slots

    def advance(self) -> None:
        self.k += 1
        self.start = self.end
        self.end = self.start + round(self.window_ns * self.osc.factor(self.start))


def read_chip(hw: Path, kernel: str | None) -> ChipConfig:
    """The simulated chip's settings, from its tree's driver files (as discovery reads them)."""
    enabled = tuple(n for n in (1, 2, 3) if _ina3221.read_int(hw / f"in{n}_enable") != 0)
    chip = _ina3221.hwmon_config(_ina3221.read_int(hw / "update_interval"),
                                 _ina3221.read_int(hw / "samples"), enabled, kernel=kernel,
                                 where=str(hw))
    if chip is None:
        from jetpower.errors import SensorError

        raise SensorError(f"the simulated chip under {hw} has no channel enabled")
    return chip


class Converter:
    """Turns a window's mean net power into one register value, as the driver reports it."""

    def __init__(self, rails: dict[int, SimRail], rng: random.Random, *,
                 noise: bool = True) -> None:
        self.rails = rails
        self.rng = rng
        self.noise = noise

    @staticmethod
    def true_mw(rail: SimRail, net_mw: float) -> float:
        return rail.idle_mw + rail.share * net_mw

    @staticmethod
    def _current_ma(rail: SimRail, p_mw: float) -> tuple[float, float]:
        i_ma = p_mw / rail.supply_mv * 1000
        v_mv = rail.supply_mv - SOURCE_MOHM * i_ma / 1000
        return p_mw / v_mv * 1000, v_mv

    def value(self, channel: int, shunt: bool, net_mw: float) -> int:
        """The file's integer: mA for a shunt conversion, mV for a bus conversion."""
        rail = self.rails[channel]
        i_ma, v_mv = self._current_ma(rail, self.true_mw(rail, net_mw))
        if shunt:
            uv = i_ma * rail.shunt_uohm / 1e6 * 1000
            if self.noise:
                uv += self.rng.gauss(0.0, SHUNT_NOISE_UV)
            reg = max(0, round(uv / SHUNT_LSB_UV))
            # the hwmon driver: DIV_ROUND_CLOSEST(reg x 40000 nV, shunt uOhm) -> mA
            return (reg * SHUNT_LSB_UV * 1000 + rail.shunt_uohm // 2) // rail.shunt_uohm
        if self.noise:
            v_mv += self.rng.gauss(0.0, BUS_NOISE_MV)
        return max(0, round(v_mv / BUS_LSB_MV)) * BUS_LSB_MV


class LatenessHistogram:
    """How late values were written after their conversion ended, in 10 us bins up to 20 ms."""

    BIN_NS = 10_000
    BINS = 2000

    def __init__(self) -> None:
        self.counts = [0] * (self.BINS + 1)
        self.n = 0
        self.max_ns = 0

    def add(self, late_ns: int) -> None:
        self.counts[min(self.BINS, max(0, late_ns) // self.BIN_NS)] += 1
        self.n += 1
        self.max_ns = max(self.max_ns, late_ns)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        want = q * self.n
        run = 0
        for i, c in enumerate(self.counts):
            run += c
            if run >= want:
                return (i + 0.5) * self.BIN_NS
        return float(self.max_ns)

    def describe(self, conversion_ns: float) -> dict[str, Any]:
        over = sum(self.counts[min(self.BINS, int(conversion_ns // self.BIN_NS)):])
        return {"count": self.n, "p50_ns": self.quantile(0.5), "p90_ns": self.quantile(0.9),
                "p99_ns": self.quantile(0.99), "max_ns": self.max_ns,
                "later_than_one_conversion": over}
