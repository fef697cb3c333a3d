"""The compiled sampler, run for real as its own process on fake sysfs trees."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetpower import _native
from jetpower.acquire.process import start_sampler
from jetpower.errors import SamplerError
from jetpower.sensors import discover

HW = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon0"


def _write(path: Path, value: int) -> None:
    # in place, as sysfs and the simulator do: the sampler keeps its fd open
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, f"{value:<11d}".encode(), 0)
    finally:
        os.close(fd)


async def _wait_until(pred, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def test_values_changed_while_running_appear_in_order(three_rail_tree: Path, tmp_path: Path,
                                                      no_leaked_children) -> None:
    """Each value written while the sampler runs appears in the ring, in order, none skipped."""
    sensor = discover(three_rail_tree)
    cur = three_rail_tree / HW / "curr1_input"
    col = 4 + [c.name for c in sensor.channels].index("VDD_IN.mA")

    async def scenario() -> list[tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=2000) as h:
            for value in range(100, 130):
                _write(cur, value)
                await _wait_until(lambda v=value: _drain(h.reader, rows) and rows[-1][col] == v)
        return rows

    rows = asyncio.run(scenario())
    seen = [r[col] for r in rows if 100 <= r[col] < 130]
    assert sorted(set(seen)) == list(range(100, 130))
    assert seen == sorted(seen), "values must appear in the order they were written"
    seqs = [r[0] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no record skipped or repeated"
    starts = [r[1] for r in rows]
    assert all(b > a for a, b in itertools.pairwise(starts))
    assert all(r[2] >= r[1] for r in rows), "after-pass stamp is not before the pre-pass stamp"


def _drain(reader: _native.RingReader, rows: list) -> bool:
    recs, lost = reader.drain()
    assert lost == 0
    rows.extend(recs)
    return bool(rows)


def test_reader_falling_behind_counts_overrun(three_rail_tree: Path, tmp_path: Path,
                                              no_leaked_children) -> None:
    """A reader more than a ring behind gets the overrun counted and never stale records."""
    sensor = discover(three_rail_tree)

    async def scenario() -> tuple[int, list, int]:
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=5000, capacity=64) as h:
            await asyncio.sleep(0.3)  # ~1500 records into a 64-record ring
            recs, lost = h.reader.drain()
            return lost, list(recs), h.reader.counters().overruns

    lost, recs, overruns = asyncio.run(scenario())
    assert lost > 500
    assert overruns == lost, "the header counts what the reader lost"
    seqs = [r[0] for r in recs]
    assert len(recs) <= 64
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_drain_rejects_records_overwritten_during_copy(three_rail_tree: Path,
                                                      tmp_path: Path) -> None:
    """With a tiny ring and a fast writer, every record returned carries its own index."""
    sensor = discover(three_rail_tree)
    ch = sensor.channels

    async def scenario() -> tuple[int, int]:
        got = lost_total = 0
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=0, capacity=8) as h:
            end = time.monotonic() + 0.3
            expect = None
            while time.monotonic() < end:
                recs, lost = h.reader.drain(8)
                lost_total += lost
                for r in recs:
                    if expect is not None:
                        assert r[0] >= expect
                    expect = r[0] + 1
                    got += 1
        return got, lost_total

    got, lost = asyncio.run(scenario())
    assert got > 0 and lost > 0
    assert len(ch) == 6


def test_read_failure_counts_errors_and_keeps_going(three_rail_tree: Path, tmp_path: Path,
                                                   no_leaked_children) -> None:
    """A file that stops parsing or disappears counts read errors; sampling goes on."""
    sensor = discover(three_rail_tree)
    names = [c.name for c in sensor.channels]
    soc_i = names.index("VDD_SOC.mA")
    in_i = names.index("VDD_IN.mV")

    async def scenario() -> tuple:
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=1000) as h:
            await asyncio.sleep(0.05)
            os.truncate(three_rail_tree / HW / "curr3_input", 0)  # empty read: ENODATA
            (three_rail_tree / HW / "in1_input").unlink()  # the file vanishes
            await asyncio.sleep(0.4)
            before = h.reader.counters().samples
            await asyncio.sleep(0.1)
            c = h.reader.counters()
            recs, _ = h.reader.drain()
            return before, c, list(recs)

    before, c, recs = asyncio.run(scenario())
    assert c.samples > before, "the sampler keeps sampling"
    assert c.read_errors[soc_i] > 100
    assert c.failing[soc_i]
    assert c.gone[in_i] and c.read_errors[in_i] > 0
    last = recs[-1]
    assert not last[3] >> soc_i & 1 and not last[3] >> in_i & 1, "invalid values are marked"
    assert last[3] >> names.index("VDD_SOC.mV") & 1, "other channels stay valid"


def test_sigterm_leaves_consistent_ring(three_rail_tree: Path, tmp_path: Path) -> None:
    """SIGTERM stops the loop between passes: state stopped, every record complete."""
    sensor = discover(three_rail_tree)
    ch = sensor.channels
    ring = tmp_path / "ring"
    import json

    spec = {"ring": str(ring), "paths": [str(c.path) for c in ch], "names": [c.name for c in ch],
            "units": [c.unit for c in ch], "capacity": 4096, "rate_hz": 2000, "cpu": 0}
    proc = subprocess.Popen([sys.executable, "-m", "jetpower.sampler", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (ring.exists() and ring.stat().st_size > 0):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert b"cpu_seconds" in out
    with _native.RingReader(ring) as r:
        c = r.counters()
        assert c.state == "stopped" and c.stop_signal == signal.SIGTERM
        assert r.info.cpu == 0, "pinned to the CPU asked for"
        recs, lost = r.drain(4096)
        rows = list(recs)
    assert lost == 0 and len(rows) == c.samples
    assert [x[0] for x in rows] == list(range(c.samples))
    assert all(x[3] == (1 << len(ch)) - 1 for x in rows)


def test_ring_version_is_checked(three_rail_tree: Path, tmp_path: Path) -> None:
    """A ring of another format version, or not a ring at all, is refused with a message."""
    sensor = discover(three_rail_tree)
    ch = sensor.channels
    ring = tmp_path / "ring"
    _native.run_channels(ring, ch, capacity=16, rate_hz=0, max_samples=4, install_signals=False)
    with _native.RingReader(ring) as r:
        assert r.ready()
    data = bytearray(ring.read_bytes())
    struct.pack_into("<I", data, 8, 99)  # version field follows the 8-byte magic
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    with _native.RingReader(bad) as r, pytest.raises(SamplerError, match="version 99"):
        r.ready()
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 8192)
    with _native.RingReader(junk) as r, pytest.raises(SamplerError, match="not a jetpower ring"):
        r.ready()


def test_ring_is_never_overwritten(three_rail_tree: Path, tmp_path: Path) -> None:
    """An existing ring file is not replaced."""
    sensor = discover(three_rail_tree)
    ring = tmp_path / "ring"
    ring.write_text("keep")

    async def scenario() -> None:
        async with start_sampler(sensor, ring, rate_hz=100):
            pass

    with pytest.raises(SamplerError, match="already exists"):
        asyncio.run(scenario())
    assert ring.read_text() == "keep"


def test_sampler_that_cannot_start_fails_loudly(three_rail_tree: Path, tmp_path: Path,
                                                no_leaked_children) -> None:
    """A sampler that dies before its handshake raises SamplerError, leaving no process."""
    sensor = discover(three_rail_tree)
    (three_rail_tree / HW / "in2_input").unlink()

    async def scenario() -> None:
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=100, ready_timeout=5):
            pass

    with pytest.raises(SamplerError, match="exited with status 1 before it was ready"):
        asyncio.run(scenario())


def test_deadline_pacing_keeps_rate(three_rail_tree: Path, tmp_path: Path) -> None:
    """At 500 Hz the intervals sit on the period grid (absolute deadlines, no drift)."""
    sensor = discover(three_rail_tree)
    ch = sensor.channels
    ring = tmp_path / "ring"
    _native.run_channels(ring, ch, capacity=1024, rate_hz=500, max_samples=250,
                         install_signals=False)
    with _native.RingReader(ring) as r:
        rows = list(r.drain(1024)[0])
        missed = r.counters().missed_deadlines
    span = (rows[-1][1] - rows[0][1]) / 1e9
    # 249 intervals of 2 ms, plus one period per missed deadline
    assert span == pytest.approx((249 + missed) * 0.002, abs=0.002)


def test_ring_goes_to_shared_memory_when_it_fits() -> None:
    """The ring's directory is /dev/shm when there is room for it, else the temporary dir."""
    from jetpower.acquire.process import SHM, ring_dir_parent

    if not os.access(SHM, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    assert ring_dir_parent(1 << 20) == SHM
    assert ring_dir_parent(1 << 60) is None, "a ring larger than shared memory goes to disk"
