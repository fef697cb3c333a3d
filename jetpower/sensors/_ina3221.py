"""The INA3221's conversion schedule, from what its drivers expose (docs/DESIGN.md, "What an
INA3221 reading is").

In continuous shunt+bus mode the chip converts CH1 shunt, CH1 bus, CH2 shunt, CH2 bus, CH3 shunt,
CH3 bus, skipping disabled channels, each conversion taking a conversion time from
:data:`CONVERSION_TIMES_US` times the averaging count.  A register holds the mean over its
conversion and changes only when the conversion ends.

The hwmon driver's ``update_interval`` (ms) is derived from the configuration register, and its
meaning changed in Linux 5.14 ("ina3221: use CVRF only for single-shot conversion", 2021):

- before (L4T R35 / JetPack 5, kernel 5.10): ``channels x (bus + shunt conversion) x samples``,
  and every read of an input file first polls the conversion-ready flag;
- since (L4T R36 / JetPack 6, kernel 5.15): ``channels x (bus + shunt conversion)``, without the
  averaging count, and a read returns the register at once.

Writing ``update_interval`` sets both conversion times to the table entry closest to
``update_interval / (2 x channels x samples)``; :func:`hwmon_config` inverts the read side and
checks that the result gives back the ``update_interval`` it came from.

NVIDIA's JetPack 4 IIO driver ``ina3221x`` does not expose its configuration: its built-in
continuous configuration (``INA3221_CONT_CONFIG_DATA`` = 0x7727: three channels, 64 averages,
1.1 ms conversions) applies unless the board's device tree sets ``ti,continuous-config``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from jetpower.sensors._types import ConversionSchedule, ReadingModel

#: the chip's conversion times (bus and shunt alike), microseconds
CONVERSION_TIMES_US = (140, 204, 332, 588, 1100, 2116, 4156, 8244)
#: the chip's averaging counts
AVERAGING = (1, 4, 16, 64, 128, 256, 512, 1024)
#: bus-voltage register step
BUS_LSB_MV = 8
#: shunt-voltage register step
SHUNT_LSB_UV = 40

#: NVIDIA's ina3221x built-in continuous configuration (0x7727)
IIO_DEFAULT_CONVERSION_US = 1100
IIO_DEFAULT_SAMPLES = 64


def closest_conversion_time(us: float) -> int:
    """The table entry the driver picks for ``us`` (Linux ``find_closest``: ties go down)."""
    table = CONVERSION_TIMES_US
    for lo, hi in itertools.pairwise(table):
        if us <= (lo + hi) / 2:
            return lo
    return table[-1]


def conversion_order(enabled: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(f"CH{n} {what}" for n in enabled for what in ("shunt", "bus"))


def current_quantum_ma(shunt_uohm: int | None) -> float | None:
    """The driver's mA step: the 40 uV shunt LSB over the shunt resistance (5 mOhm: 8 mA)."""
    if not shunt_uohm or shunt_uohm <= 0:
        return None
    return SHUNT_LSB_UV * 1000 / shunt_uohm


@dataclass(frozen=True, slots=True)
class ChipConfig:
    """One chip's conversion settings, and how they were found."""

    enabled: tuple[int, ...]  # channel numbers (1..3) that convert, in order
    conversion_us: int
    samples: int
    source: str
    assumed: bool = False
    consistent: bool | None = None
    update_interval_ms: int | None = None
    interval_semantics: str | None = None  # "includes_averaging" | "excludes_averaging"
    read: str | None = None  # what a read does (ReadingModel.read)
    note: str = ""

    @property
    def slots(self) -> int:
        return 2 * len(self.enabled)

    @property
    def window_us(self) -> float:
        return float(self.conversion_us * self.samples)

    @property
    def period_us(self) -> float:
        return self.slots * self.window_us

    def slot(self, channel: int, quantity: str) -> int:
        """Position of ``channel``'s shunt (current) or bus (voltage) conversion in the cycle."""
        k = self.enabled.index(channel)
        return 2 * k + (0 if quantity == "current" else 1)

    def schedule(self, channel: int, quantity: str) -> ConversionSchedule:
        facts: list[tuple[str, object]] = [("enabled_channels", list(self.enabled))]
        if self.update_interval_ms is not None:
            facts.append(("update_interval_ms", self.update_interval_ms))
        if self.interval_semantics is not None:
            facts.append(("update_interval_semantics", self.interval_semantics))
        return ConversionSchedule(
            period_us=self.period_us, slot=self.slot(channel, quantity), slots=self.slots,
            order=conversion_order(self.enabled), conversion_us=self.conversion_us,
            samples=self.samples, source=self.source, assumed=self.assumed,
            consistent=self.consistent, facts=tuple(facts),
        )

    def model(self, channel: int, quantity: str, quantum: float | None) -> ReadingModel:
        if self.read == "triggers_conversion":  # no free-running cycle: nothing is held
            return ReadingModel("window_mean", window_us=self.window_us, held=False,
                                quantum=quantum, read=self.read, note=self.note)
        return ReadingModel("window_mean", window_us=self.window_us, held=True,
                            schedule=self.schedule(channel, quantity), quantum=quantum,
                            read=self.read, note=self.note)


def _interval_ms(channels: int, conversion_us: int, samples: int) -> int:
    """What the driver's update_interval reads for these settings (DIV_ROUND_CLOSEST to ms)."""
    return (channels * 2 * conversion_us * samples + 500) // 1000


def kernel_semantics(l4t: str | None, kernel: str | None) -> tuple[str | None, str | None]:
    """(update_interval semantics, read behaviour) for the hwmon driver of this release, or
    (None, None) when neither the L4T release nor the kernel version is known."""
    major_minor: tuple[int, int] | None = None
    if kernel:
        parts = kernel.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].split("-")[0].isdigit():
            major_minor = (int(parts[0]), int(parts[1].split("-")[0]))
    if major_minor is None and l4t:
        digits = l4t.lstrip("R").split(".")[0]
        if digits.isdigit():
            major_minor = (5, 15) if int(digits) >= 36 else (5, 10)
    if major_minor is None:
        return None, None
    if major_minor >= (5, 14):
        return "excludes_averaging", "latest_value"
    return "includes_averaging", "waits_for_conversion"


def hwmon_config(update_interval_ms: int | None, samples: int | None, enabled: tuple[int, ...],
                 *, l4t: str | None = None, kernel: str | None = None,
                 where: str = "") -> ChipConfig | None:
    """The chip's settings from the ``ina3221`` hwmon files (None: no channel enabled)."""
    if not enabled:
        return None
    n = len(enabled)
    s = samples if samples in AVERAGING else 1
    src = (f"ina3221 hwmon driver files{' under ' + where if where else ''}: update_interval="
           f"{update_interval_ms} ms, samples={samples}, enabled channels {list(enabled)}")
    if update_interval_ms is None or update_interval_ms < 0:  # 0 is real: 140 us, 1 channel
        ct = 1100
        return ChipConfig(enabled, ct, s, src + "; no update_interval: the Jetson default "
                          "1100 us conversions assumed", assumed=True, consistent=None,
                          update_interval_ms=update_interval_ms, read=None)
    semantics, read = kernel_semantics(l4t, kernel)
    candidates = {
        "includes_averaging": closest_conversion_time(update_interval_ms * 1000 / (2 * n * s)),
        "excludes_averaging": closest_conversion_time(update_interval_ms * 1000 / (2 * n)),
    }
    reads_back = {
        "includes_averaging": _interval_ms(n, candidates["includes_averaging"], s),
        "excludes_averaging": _interval_ms(n, candidates["excludes_averaging"], 1),
    }
    if semantics is None:  # unknown kernel: the reading that gives update_interval back wins
        fits = [k for k in ("includes_averaging", "excludes_averaging")
                if reads_back[k] == update_interval_ms]
        semantics = fits[0] if fits else "includes_averaging"
        why = ("kernel not known; the interpretation that reproduces update_interval"
               if fits else "kernel not known and neither interpretation reproduces "
               "update_interval; averaging assumed included")
    else:
        why = f"kernel {kernel}" if kernel else f"L4T {l4t}"
    ct = candidates[semantics]
    consistent = reads_back[semantics] == update_interval_ms
    note = "" if consistent else (
        f"update_interval {update_interval_ms} ms is not what {n} channel(s) x 2 x {ct} us "
        f"{'x ' + str(s) + ' samples ' if semantics == 'includes_averaging' else ''}read back "
        f"as ({reads_back[semantics]} ms): the files disagree; probe's measured change period "
        "decides")
    src += (f"; conversion time = closest table entry to update_interval / (2 x {n} channel(s)"
            f"{' x ' + str(s) + ' samples' if semantics == 'includes_averaging' else ''}) "
            f"= {ct} us ({semantics.replace('_', ' ')}: {why})")
    return ChipConfig(enabled, ct, s, src, consistent=consistent,
                      update_interval_ms=update_interval_ms, interval_semantics=semantics,
                      read=read, note=note)


def iio_config(running_mode: str | None) -> ChipConfig:
    """The JetPack 4 ``ina3221x`` chip: its configuration is not exposed, so the driver's
    documented default applies."""
    enabled = (1, 2, 3)  # 0x7727 enables all three
    if running_mode == "0":
        return ChipConfig(
            enabled, IIO_DEFAULT_CONVERSION_US, IIO_DEFAULT_SAMPLES,
            "NVIDIA ina3221x driver, running_mode 0 (triggered): each read starts one "
            "conversion (INA3221_TRIG_CONFIG_DATA 0x7723: 64 averages of 1.1 ms) and waits "
            "for it; the chip is off in between", assumed=True, read="triggers_conversion",
            note="triggered mode: no free-running schedule; a value is the mean over the "
                 "conversion its own read started")
    return ChipConfig(
        enabled, IIO_DEFAULT_CONVERSION_US, IIO_DEFAULT_SAMPLES,
        "NVIDIA ina3221x driver (JetPack 4) in continuous mode: its configuration is not "
        "exposed; the driver's built-in INA3221_CONT_CONFIG_DATA 0x7727 (3 channels, 64 "
        "averages, 1.1 ms conversions) is assumed, which the board's device tree "
        "(ti,continuous-config) may override: probe's measured change period is the check",
        assumed=True, read="latest_value")


def read_int(path: Path) -> int | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None
