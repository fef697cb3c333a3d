"""Self-characterisation of a sensor: read cost per rail and the period at which values change.

The INA3221 converts each channel every ``update_interval`` ms; sampling faster re-reads the same
conversion.  ``probe`` measures, per rail, what one read costs and how often its values really
change, by free-running the C loop over the rail's channels for a while.  The same code serves
every channel kind: sysfs files, RAPL energy counters, and NVML readings (instant power and the
energy counter, which the driver refreshes at periods of its own), reported per channel too.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

from jetpower import _native
from jetpower.sensors import Channel, SensorSet


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def polled_apart(channel: Channel) -> bool:
    """NVML readings come from a poller thread of the sampler (every 10 ms; the energy counter
    every 50 ms), not from its passes: each pass copies the latest values."""
    return str(channel.path).startswith("nvml:")


def read_cost(sensor: SensorSet, reads: int = 2000) -> dict[str, dict[str, Any]]:
    """Per rail: median and p99 cost in microseconds of reading all of its channels once, and the
    same per channel (a channel polled apart from the loop is timed with fewer reads)."""
    out: dict[str, dict[str, Any]] = {}
    for rail in sensor.rails:
        per: dict[str, list[float]] = {}
        for c in rail.channels:
            n = min(reads, 50) if polled_apart(c) else reads
            per[c.name] = [ns / 1000 for ns in _native.time_reads(str(c.path), n)]
        totals = sorted(sum(x) for x in zip(*per.values()))
        out[rail.label] = {
            "read_us_median": statistics.median(totals),
            "read_us_p99": _percentile(totals, 0.99),
            "read_us_by_channel": {
                name: {"median": statistics.median(v), "p99": _percentile(sorted(v), 0.99),
                       "polled_apart": polled_apart(next(c for c in rail.channels
                                                         if c.name == name))}
                for name, v in per.items()
            },
        }
    return out


#: how fast ``change_periods`` samples: 0.2 ms resolution against periods of milliseconds (an
#: INA3221 converts every ~7 ms, NVML every ~100 ms).  Free-running instead would fill any ring
#: in a fraction of the time asked for when passes are cheap (NVML's polled values).
PROBE_RATE_HZ = 5000


def change_periods(sensor: SensorSet, seconds: float = 1.0) -> dict[str, dict[str, Any]]:
    """Sample for ``seconds`` at 5 kHz; per rail, how often its values actually change."""
    channels = sensor.channels
    with tempfile.TemporaryDirectory(prefix="jetpower-probe-") as tmp:
        ring = Path(tmp) / "probe.ring"
        capacity = int(seconds * PROBE_RATE_HZ) + 1024
        _native.run_channels(ring, channels, capacity=capacity, rate_hz=PROBE_RATE_HZ,
                             max_samples=capacity, max_seconds=seconds, install_signals=False)
        with _native.RingReader(ring) as reader:
            records, _ = reader.drain(capacity)
            rows = list(records)
    index = {c.name: k for k, c in enumerate(channels)}
    out: dict[str, dict[str, Any]] = {}
    for rail in sensor.rails:
        idx = [index[c.name] for c in rail.channels]
        out[rail.label] = {"passes": len(rows), **_changes(rows, idx)}
        if len(idx) > 1 or rail.energy is not None:
            # per channel too: an NVML power reading and its energy counter (or a voltage and a
            # current) refresh at periods of their own
            out[rail.label]["channels"] = {
                c.name: {"reading": c.reading, **_changes(rows, [index[c.name]])}
                for c in rail.channels
            }
    return out


def _changes(rows: list[tuple[int, ...]], idx: list[int]) -> dict[str, Any]:
    """How often the values of channels ``idx`` change, over records ``rows``.

    Only valid reads count: a failed read (value 0, its valid bit clear) neither starts nor ends
    a change, so an NVML call that fails now and then does not look like a change.
    """
    mask = sum(1 << i for i in idx)
    changes: list[int] = []
    prev: tuple[int, ...] | None = None
    invalid = 0
    for rec in rows:
        if rec[3] & mask != mask:
            invalid += 1
            continue
        vals = tuple(rec[4 + i] for i in idx)
        if prev is not None and vals != prev:
            changes.append((rec[1] + rec[2]) // 2)
        prev = vals
    gaps = sorted((b - a) / 1e6 for a, b in itertools.pairwise(changes))
    return {
        "changes": len(changes),
        "invalid_reads": invalid,
        "change_period_ms": statistics.median(gaps) if gaps else None,
        "change_period_p90_ms": _percentile(gaps, 0.9) if gaps else None,
    }


def _kernel() -> str:
    return platform.release()


async def probe(sensor: SensorSet, *, seconds: float = 1.0, reads: int = 2000,
                rate_hz: float = 1000.0, runs: int = 30000) -> dict[str, Any]:
    """The whole characterisation, as one JSON-able object; ``per_layer`` says what the
    setting in force allows for per-layer energy at ``rate_hz`` and ``runs`` profiled runs."""
    from jetpower.acquire.allowance import allowance

    costs = await asyncio.to_thread(read_cost, sensor, reads)
    changes = await asyncio.to_thread(change_periods, sensor, seconds)
    rails = []
    for rail in sensor.rails:
        rails.append({**rail.to_dict(), **costs[rail.label], **changes[rail.label]})
    return {
        "format": "jetpower.probe",
        "version": 1,
        "source": sensor.source,
        "simulated": sensor.simulated,
        "root": str(sensor.root),
        "board": sensor.board,
        "l4t": sensor.l4t,
        "jetpack": sensor.jetpack,
        "kernel": _kernel(),
        "cpus": os.cpu_count(),
        "rails": rails,
        "total": sensor.total.to_dict(),
        "total_reason": sensor.total.reason,
        "devices": list(sensor.devices),
        "update_interval": {d["device"]: d.get("update_interval") for d in sensor.devices},
        "samples": {d["device"]: d.get("samples") for d in sensor.devices},
        "probe_seconds": seconds,
        "per_layer": allowance(sensor, rate_hz=rate_hz, runs=runs),
    }


#: rate 0 ("each new value once") paces at the source's change period, never faster than this
#: (a source whose values never changed during the probe is paced here too)
EACH_VALUE_CEILING_HZ = 1000
#: how long rate 0 probes a source that states no update interval
EACH_VALUE_PROBE_S = 0.3


def each_value_rate(sensor: SensorSet) -> tuple[float, str]:
    """The rate that reads each new value of ``sensor`` once, and how it was found.

    The period the values change at: the chips' ``update_interval`` where the driver states it
    (INA3221, the simulated chip), else measured by a short probe (:func:`change_periods`); the
    fastest rail sets the pace, capped at :data:`EACH_VALUE_CEILING_HZ`.  The sampler then paces
    by deadlines like at any other rate: it never spins.
    """
    stated = [float(d["update_interval"]) for d in sensor.devices
              if isinstance(d.get("update_interval"), (int, float)) and d["update_interval"] > 0]
    if stated:
        period_ms, how = min(stated), f"update_interval {min(stated):g} ms"
    else:
        found = [r["change_period_ms"] for r in change_periods(sensor, EACH_VALUE_PROBE_S).values()
                 if r.get("change_period_ms")]
        if not found:
            return float(EACH_VALUE_CEILING_HZ), (
                f"no value changed during a {EACH_VALUE_PROBE_S:g} s probe: the ceiling "
                f"{EACH_VALUE_CEILING_HZ} Hz")
        period_ms, how = min(found), f"measured change period {min(found):.3f} ms"
    rate = min(float(EACH_VALUE_CEILING_HZ), 1000.0 / period_ms)
    rate = max(float(_native.MIN_RATE_HZ), rate)
    return rate, f"{how} -> {rate:g} Hz (ceiling {EACH_VALUE_CEILING_HZ} Hz)"
