"""The simulated source: a fake INA3221 hwmon tree whose files a generator rewrites in place.

The real C sampler reads it exactly as it reads a board, so everything downstream of the sensor is
exercised for real.  The generator behaves like the chip (``_simchip``): it converts the enabled
channels' shunt and bus voltages in the chip's order on a slightly-off, drifting clock, writes
each file when its conversion ends with the mean of its input over that conversion's window,
quantised as the driver reports it, and leaves it alone until that slot's next conversion.

What it averages is the board's true power (``_simpower``): when the supervisor gives it a truth
bus, the layers the worker publishes drive it, each layer name with a deterministic power; outside
a profiling pass it follows this machine's CPU load.  With ``--truth`` it writes what it did (the
power table, per-layer truth, the conversion schedule it used) so that a report can state its
error against the truth (docs/FORMATS.md, "simulator truth").  Its numbers are never
measurements: every run on it says so in its log, manifest and report.

Run as ``python -m jetpower.sensors.simulate ROOT`` (the supervisor owns it as a child process).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from jetpower._fs import atomic_write_json
from jetpower.errors import SensorError
from jetpower.sensors import _simchip
from jetpower.sensors._ina3221 import BUS_LSB_MV, SHUNT_LSB_UV, ChipConfig, read_int
from jetpower.sensors._simchip import (
    Converter,
    LatenessHistogram,
    Oscillator,
    Sequence,
    SimRail,
    read_chip,
)
from jetpower.sensors._simpower import Background, PowerTable, Timeline
from jetpower.sensors.truthbus import Subscriber

HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon0"
#: label -> (idle mW, share of the board's net power, supply mV)
RAILS: dict[str, tuple[float, float, int]] = {
    "VDD_IN": (3200.0, 1.0, 5048),
    "VDD_CPU_GPU_CV": (650.0, 0.8, 5040),
    "VDD_SOC": (900.0, 0.08, 5040),
}
TOTAL_RAIL = "VDD_IN"
SHUNT_UOHM = 5000
UPDATE_INTERVAL_MS = 7
#: the kernel the simulated board claims: the JetPack 6 driver, whose reads return at once
KERNEL = "5.15.148-jetpower-simulated"
TRUTH_FORMAT = "jetpower.simulator-truth"
TRUTH_VERSION = 1
TRUTH_EVERY_NS = 5_000_000_000
#: the generator's real-time priority: one below the sampler's (jetpower.sampler.__main__)
FIFO_PRIORITY = 49
_WIDTH = 12  # values are written fixed-width so an in-place rewrite never leaves a stale tail


def write_tree(root: Path, files: Mapping[str, str], symlinks: Mapping[str, str] = {}) -> None:
    """Create a sysfs-like tree of real files (and symlinks) under ``root``."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content + "\n")
    for rel, target in symlinks.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_symlink():
            p.symlink_to(target)


def _fixed(v: int) -> str:
    return f"{v:<{_WIDTH - 1}d}"


def create_tree(root: Path) -> Path:
    """Write the fake board under ``root``; returns ``root``."""
    hw = f"{HWMON}"
    files: dict[str, str] = {
        "sys/bus/i2c/drivers/ina3221/1-0040/name": "ina3221",
        f"{hw}/name": "ina3221",
        f"{hw}/update_interval": str(UPDATE_INTERVAL_MS),
        f"{hw}/samples": "1",
        f"{hw}/in7_label": "sum of shunt voltages",
        "proc/device-tree/model": "jetpower simulated INA3221 board",
        "proc/sys/kernel/osrelease": KERNEL,
        "sys/class/thermal/thermal_zone0/type": "cpu-thermal",
        "sys/class/thermal/thermal_zone0/temp": "40000",
    }
    for n, (label, (idle_mw, _, mv)) in enumerate(RAILS.items(), start=1):
        files[f"{hw}/in{n}_label"] = label
        files[f"{hw}/in{n}_enable"] = "1"
        files[f"{hw}/shunt{n}_resistor"] = str(SHUNT_UOHM)
        files[f"{hw}/in{n}_input"] = _fixed(mv)
        files[f"{hw}/curr{n}_input"] = _fixed(round(idle_mw * 1000 / mv))
    write_tree(root, files, {"sys/class/hwmon/hwmon0": f"../../{HWMON.removeprefix('sys/')}"})
    return root


def _rails(hw: Path, chip: ChipConfig) -> dict[int, SimRail]:
    out = {}
    for n, (label, (idle_mw, share, mv)) in enumerate(RAILS.items(), start=1):
        if n in chip.enabled:
            shunt = read_int(hw / f"shunt{n}_resistor") or SHUNT_UOHM
            out[n] = SimRail(label, n, idle_mw, share, float(mv), shunt)
    return out


def _keep_time() -> str:
    """A chip is never late: wake within ~1 us of each deadline instead of the default 50 us
    slack, and run SCHED_FIFO (one below the sampler) where permitted, so that a busy worker
    does not delay the conversions.  Returns what was granted, for the truth file."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK
    prio = FIFO_PRIORITY
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except OSError as e:
        return f"normal priority (SCHED_FIFO not permitted: {e.strerror})"
    return f"SCHED_FIFO priority {prio}"


class Generator:
    """The chip, the true power and the bookkeeping of one simulated run (no sleeping here:
    :meth:`convert` is the whole of one conversion, so tests can drive it on a fake clock)."""

    def __init__(self, root: Path, *, seed: int | None = None, t_start_ns: int,
                 bus: Path | None = None, table: PowerTable | None = None,
                 follow_cpu: bool = True, noise: bool = True,
                 offset: float | None = None) -> None:
        self.root = root
        self.hw = root / HWMON
        self.seed = seed
        rng = random.Random(seed)
        self.chip = read_chip(self.hw, KERNEL)
        self.rails = _rails(self.hw, self.chip)
        self.osc = Oscillator(rng, t_start_ns, offset=offset)
        self.phase = rng.random()
        self.seq = Sequence(self.chip, self.osc, t_start_ns, self.phase)
        self.conv = Converter(self.rails, rng, noise=noise)
        self.table = table or PowerTable()
        self.timeline = Timeline(self.table)
        self.background = Background(follow_cpu=follow_cpu)
        self.sub = Subscriber(bus) if bus is not None else None
        self.late = LatenessHistogram()
        self.anchors: list[dict[str, Any]] = []
        self._next_anchor = t_start_ns
        self.t_start_ns = t_start_ns
        self.priority = "not run in real time"
        self.fds: dict[tuple[int, bool], int] = {}
        for n in self.rails:
            self.fds[(n, True)] = os.open(self.hw / f"curr{n}_input", os.O_WRONLY)
            self.fds[(n, False)] = os.open(self.hw / f"in{n}_input", os.O_WRONLY)

    def _name(self, table: int, layer: int) -> str | None:
        names = self.sub.names(table) if self.sub is not None else None
        return names[layer] if names is not None and 0 <= layer < len(names) else None

    def convert(self, now_ns: int) -> tuple[int, int, int, int, float, int]:
        """Do the due conversion: (index, slot, window start, end, true net mW, value written)."""
        s = self.seq
        k, slot, a, b = s.k, s.slot, s.start, s.end
        if self.sub is not None:
            self.timeline.feed(self.sub.poll(), self._name)
        self.background.tick(now_ns)
        net = self.timeline.mean_net(a, b, self.background)
        channel, shunt = self.chip.enabled[slot // 2], slot % 2 == 0
        value = self.conv.value(channel, shunt, net)
        os.pwrite(self.fds[(channel, shunt)], _fixed(value).encode(), 0)
        if b >= self._next_anchor:
            self.anchors.append({"k": k, "end_ns": b, "factor": self.osc.factor(b)})
            self._next_anchor = b + 1_000_000_000
        s.advance()
        self.timeline.prune(s.start)
        return k, slot, a, b, net, value

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        if self.sub is not None:
            self.sub.close()

    def truth(self, *, final: bool, now_ns: int) -> dict[str, Any]:
        chip = self.chip
        total = next((r for r in self.rails.values() if r.label == TOTAL_RAIL), None)
        return {
            "format": TRUTH_FORMAT,
            "version": TRUTH_VERSION,
            "simulated": True,
            "final": final,
            "written_ns": now_ns,
            "seed": self.seed,
            "clock": "CLOCK_MONOTONIC ns",
            "total_rail": TOTAL_RAIL,
            "rails": {r.label: {"channel": r.channel, "idle_mw": r.idle_mw, "share": r.share,
                                "supply_mv": r.supply_mv, "shunt_uohm": r.shunt_uohm}
                      for r in self.rails.values()},
            "idle_mw": total.idle_mw if total else None,
            "chip": {
                "enabled_channels": list(chip.enabled),
                "order": [f"CH{n} {w}" for n in chip.enabled for w in ("shunt", "bus")],
                "conversion_us": chip.conversion_us,
                "samples": chip.samples,
                "window_ns_nominal": chip.window_us * 1000,
                "period_ns_nominal": chip.period_us * 1000,
                "start_ns": self.t_start_ns,
                "first_end_ns": self.seq.first_end,
                "phase": self.phase,
                "oscillator": self.osc.describe(),
                "conversions": self.seq.k,
                "anchors": self.anchors,
                "write_lateness": self.late.describe(chip.window_us * 1000),
                "scheduling": self.priority,
                "quantisation": {"shunt_lsb_uv": SHUNT_LSB_UV,
                                 "bus_lsb_mv": BUS_LSB_MV,
                                 "shunt_noise_uv": _simchip.SHUNT_NOISE_UV,
                                 "bus_noise_mv": _simchip.BUS_NOISE_MV,
                                 "source_mohm": _simchip.SOURCE_MOHM},
            },
            "power": self.table.describe(),
            "layers": self.timeline.layer_truth(),
            "gap_ns": self.timeline.gap_ns,
            "background": self.background.trace,
            "bus": None if self.sub is None else {
                "marks": self.sub.next, "lost": self.sub.lost,
                "unknown_marks": self.timeline.unknown_marks,
                "unmatched_ends": self.timeline.unmatched_ends,
                "late_marks": self.timeline.late_marks,
                "late_ns": self.timeline.late_ns},
        }


def run_generator(root: Path, *, seed: int | None = None, stop_after: float | None = None,
                  bus: Path | None = None, truth: Path | None = None,
                  table: PowerTable | None = None, conversions: Path | None = None,
                  on_ready: Callable[[], None] | None = None) -> None:
    """Run the chip until SIGTERM/SIGINT (or ``stop_after`` seconds), in real time;
    ``on_ready`` is called once the chip runs and the bus is being followed."""
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    priority = _keep_time()
    start = time.monotonic_ns()
    gen = Generator(root, seed=seed, t_start_ns=start, bus=bus, table=table)
    gen.priority = priority
    log: IO[str] | None = None
    if conversions is not None:
        log = conversions.open("w", encoding="utf-8")
        log.write("k,slot,channel,quantity,start_ns,end_ns,written_ns,net_mw,value\n")
    next_truth = start + TRUTH_EVERY_NS
    if on_ready is not None:
        on_ready()
    end = None if stop_after is None else start + int(stop_after * 1e9)
    try:
        while not stop:
            due = gen.seq.end
            now = time.monotonic_ns()
            if end is not None and due > end:
                break
            if due > now:
                time.sleep((due - now + 1000) / 1e9)  # returns after the deadline, or on a signal
                if stop:
                    break
                now = time.monotonic_ns()
            k, slot, a, b, net, value = gen.convert(now)
            written = time.monotonic_ns()
            gen.late.add(written - b)
            if log is not None:
                ch = gen.chip.enabled[slot // 2]
                log.write(f"{k},{slot},{ch},{'current' if slot % 2 == 0 else 'voltage'},"
                          f"{a},{b},{written},{net:.3f},{value}\n")
            if truth is not None and written >= next_truth:
                atomic_write_json(truth, gen.truth(final=False, now_ns=written), indent=1)
                next_truth = written + TRUTH_EVERY_NS
    finally:
        if log is not None:
            log.close()
        if truth is not None:
            atomic_write_json(truth, gen.truth(final=True, now_ns=time.monotonic_ns()),
                              indent=1)
        gen.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m jetpower.sensors.simulate")
    ap.add_argument("root", type=Path)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--create", action="store_true", help="write the tree first")
    ap.add_argument("--truth-bus", type=Path, default=None,
                    help="the truth bus file the worker publishes its layers on")
    ap.add_argument("--truth", type=Path, default=None, help="write the truth file here")
    ap.add_argument("--power-table", type=Path, default=None,
                    help='JSON {"layers": {name: net mW}, "gap_mw": mW}; other layers: hash')
    ap.add_argument("--conversions", type=Path, default=None,
                    help="log every conversion to this CSV (tests and debugging)")
    ap.add_argument("--stop-after", type=float, default=None, help="seconds, then exit")
    args = ap.parse_args()
    from jetpower._process import die_with_parent

    die_with_parent()  # never outlive the supervisor, even one that is SIGKILLed
    try:
        if args.create:
            create_tree(args.root)
        table = PowerTable.load(args.power_table) if args.power_table else None
        run_generator(args.root, seed=args.seed, stop_after=args.stop_after,
                      bus=args.truth_bus, truth=args.truth, table=table,
                      conversions=args.conversions,
                      on_ready=lambda: print("ready", flush=True))
    except (SensorError, OSError) as e:
        raise SystemExit(f"simulated sensor: {e}") from None


if __name__ == "__main__":
    main()
