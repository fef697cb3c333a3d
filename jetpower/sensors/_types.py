"""Typed, immutable descriptions of power rails and the files behind them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from jetpower.errors import SensorError

Derivation = Literal["v_x_i", "power", "counter"]
Quantity = Literal["voltage", "current", "power", "energy"]
#: what a value is (see :class:`ReadingModel`): ``instant`` a value at the moment of the read;
#: ``window_mean`` the mean of the input over a window of known length, held until the next one;
#: ``counter`` an accumulating total that only grows, wrapping at ``Channel.wrap`` where set
ReadingKind = Literal["instant", "window_mean", "counter"]

NVML_PREFIX = "nvml:"


@dataclass(frozen=True, slots=True)
class ConversionSchedule:
    """When a window-mean value is converted: a fixed cycle of conversions on the chip's clock.

    One cycle is ``slots`` back-to-back conversions in ``order``; this value is the one in
    position ``slot`` (0-based), so its window ends ``(slot + 1) * window_us`` after the cycle
    starts and recurs every ``period_us``.  The figures are nominal: the chip's own oscillator
    sets the pace, so the real period differs by up to several percent and drifts.
    """

    period_us: float  # nominal cycle period
    slot: int
    slots: int
    order: tuple[str, ...]
    conversion_us: int  # one conversion, before averaging
    samples: int  # averaging count: a result is the mean of this many conversions
    source: str  # where these figures come from, in words
    assumed: bool = False  # documented defaults, not read from the device
    consistent: bool | None = None  # the driver files agree with each other (None: not checked)
    facts: tuple[tuple[str, Any], ...] = ()  # the driver's raw figures these were derived from

    @property
    def window_us(self) -> float:
        return float(self.conversion_us * self.samples)

    @property
    def end_offset_us(self) -> float:
        return (self.slot + 1) * self.window_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_us_nominal": self.period_us,
            "slot": self.slot,
            "slots": self.slots,
            "order": list(self.order),
            "end_offset_us_nominal": self.end_offset_us,
            "conversion_us": self.conversion_us,
            "samples": self.samples,
            "assumed": self.assumed,
            "consistent": self.consistent,
            "clock": "the chip's own oscillator: the real period differs from the nominal one "
                     "by up to several percent and drifts; fit it from the value changes",
            "source": self.source,
            **dict(self.facts),
        }


@dataclass(frozen=True, slots=True)
class ReadingModel:
    """What one value of a channel is, so that an estimator can place it in time.

    ``instant``: the quantity at (about) the moment of the read.  ``window_mean``: the mean over
    ``window_us`` that ended before the read, ``held`` until the next conversion replaces it,
    on ``schedule`` where that is known.  ``counter``: a running total (differences over time
    give the mean rate).  ``quantum`` is the value's step in the channel's unit (None: unknown);
    ``read`` says what a read does where the driver is known (``latest_value``: returns the
    register at once; ``waits_for_conversion``: waits for the conversion-ready flag first;
    ``triggers_conversion``: starts a conversion and waits for it).
    """

    kind: ReadingKind
    window_us: float | None = None
    held: bool | None = None
    schedule: ConversionSchedule | None = None
    quantum: float | None = None
    read: str | None = None
    note: str = ""

    def to_dict(self, unit: str, wrap: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "window_mean":
            out["window_us"] = self.window_us
            out["held"] = self.held
            out["schedule"] = None if self.schedule is None else self.schedule.to_dict()
        if self.kind == "counter":
            out["wrap"] = wrap
        out["quantum"] = self.quantum
        out["unit"] = unit
        out["read"] = self.read
        if self.note:
            out["note"] = self.note
        return out


INSTANT = ReadingModel("instant")
COUNTER = ReadingModel("counter")


@dataclass(frozen=True, slots=True)
class Channel:
    """One value the sampler reads: an integer in ``unit``.

    ``path`` is a file re-read at offset 0 (sysfs), or an NVML reading spelled
    ``nvml:<gpu index>:<power_instant|power_avg|energy>`` (see ``csrc/jp_sampler.h``).
    """

    name: str  # unique within a sensor set, e.g. "VDD_IN.mV"
    path: Path
    unit: str  # "mV", "mA", "mW", "uW", "mJ", "uJ"
    quantity: Quantity
    model: ReadingModel = INSTANT
    wrap: int | None = None  # a counter's range: it goes back to 0 after wrap - 1 (None: never)
    about: str = ""  # where the value comes from, in words

    @property
    def reading(self) -> ReadingKind:
        """The reading model's kind: ``instant``, ``window_mean`` or ``counter``."""
        return self.model.kind

    @property
    def kind(self) -> Literal["file", "nvml"]:
        return "nvml" if str(self.path).startswith(NVML_PREFIX) else "file"


@dataclass(frozen=True, slots=True)
class Rail:
    """A power rail and how its power is derived.

    ``v_x_i``: power [uW] = voltage [mV] x current [mA]; ``power``: a power reading (mW or uW);
    ``counter``: power from the differences of the ``energy`` counter over monotonic time.
    An ``energy`` counter may also sit beside a power reading (NVML): then window energy can be
    taken both ways, by integrating power and from the counter.
    """

    label: str
    device: str
    derivation: Derivation
    voltage: Channel | None = None
    current: Channel | None = None
    power: Channel | None = None
    energy: Channel | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        chans = (self.voltage, self.current, self.power, self.energy)
        return tuple(c for c in chans if c is not None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "device": self.device,
            "derivation": self.derivation,
            "files": {c.quantity: str(c.path) for c in self.channels},
            "units": {c.quantity: c.unit for c in self.channels},
            "readings": {c.quantity: c.reading for c in self.channels},
            "reading_models": {c.quantity: c.model.to_dict(c.unit, c.wrap)
                               for c in self.channels},
        }
        if self.energy is not None:
            out["energy_wrap"] = self.energy.wrap
        about = {c.quantity: c.about for c in self.channels if c.about}
        if about:
            out["about"] = about
        return out


@dataclass(frozen=True, slots=True)
class TotalRule:
    """Which rail (or sum of rails) counts as the board's total power, and why."""

    rails: tuple[str, ...]
    reason: str

    @property
    def is_sum(self) -> bool:
        return len(self.rails) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"sum": list(self.rails)} if self.is_sum else {"rail": self.rails[0]}


@dataclass(frozen=True, slots=True)
class SensorSet:
    """What discovery found: the rails to sample, the total rule, and what is known of the board."""

    source: str  # "ina3221", "ina3221x", "nvml", "rapl", "hwmon", "simulated"
    root: Path
    rails: tuple[Rail, ...]
    total: TotalRule
    board: str | None = None
    l4t: str | None = None
    jetpack: str | None = None
    simulated: bool = False
    devices: tuple[dict[str, Any], ...] = field(default=())  # per chip: update_interval, samples
    selected_because: str = ""  # why discovery picked this source (and what it passed over)
    #: simulated runs: the truth bus the simulator follows, for the workers' config (truth_bus);
    #: a temporary file of the run, so not part of the sensor's description
    truth_bus: Path | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(c for r in self.rails for c in r.channels)

    def rail(self, label: str) -> Rail:
        for r in self.rails:
            if r.label == label:
                return r
        raise SensorError(
            f"unknown rail {label!r}; this sensor has: {', '.join(r.label for r in self.rails)}"
        )

    def select(self, rails: tuple[str, ...] | None = None,
               total: tuple[str, ...] | None = None) -> SensorSet:
        """Keep only ``rails`` (default all) and count ``total`` (default the board rule)."""
        unknown = [n for n in (*(rails or ()), *(total or ())) if n not in self.labels]
        if unknown:
            raise SensorError(
                f"unknown rail name(s) {', '.join(map(repr, unknown))}; "
                f"this sensor has: {', '.join(self.labels)}"
            )
        new_total = self.total if not total else TotalRule(tuple(total), "named in the plan")
        keep = set(rails) | set(new_total.rails) if rails else set(self.labels)
        missing = [n for n in new_total.rails if n not in keep]
        if missing:  # cannot happen: total rails are always kept
            raise SensorError(f"total rail(s) {missing} not sampled")
        return replace(self, rails=tuple(r for r in self.rails if r.label in keep), total=new_total)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(r.label for r in self.rails)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "simulated": self.simulated,
            "root": str(self.root),
            "board": self.board,
            "l4t": self.l4t,
            "jetpack": self.jetpack,
            "rails": [r.to_dict() for r in self.rails],
            "total": self.total.to_dict(),
            "total_reason": self.total.reason,
            "devices": list(self.devices),
            "selected_because": self.selected_because,
        }
