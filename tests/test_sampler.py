"""The compiled sampler, run for real as its own process on fake sysfs trees."""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def test_each_read_is_stamped_inside_its_pass(three_rail_tree: Path, tmp_path: Path,
                                              no_leaked_children) -> None:
    """Every channel's read has its own CLOCK_MONOTONIC bracket, in channel order inside the
    pass; a value written at time T is first seen by a read that ended after T, and the read
    before it (old value) began before the write ended."""
    sensor = discover(three_rail_tree)
    cur = three_rail_tree / HW / "curr2_input"
    k = [c.path for c in sensor.channels].index(cur)

    async def scenario() -> tuple[list[_native.Records], list[tuple[int, int, int]]]:
        batches: list[_native.Records] = []
        writes: list[tuple[int, int, int]] = []
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=2000, fifo=False) as h:
            for value in range(500, 510):
                t0 = time.monotonic_ns()
                _write(cur, value)
                writes.append((value, t0, time.monotonic_ns()))

                def seen(v: int = value) -> bool:
                    recs, _ = h.reader.drain()
                    batches.append(recs)
                    return len(recs) > 0 and int(recs.values[-1, k]) == v

                await _wait_until(seen)
        return batches, writes

    batches, writes = asyncio.run(scenario())
    arr = np.concatenate([b.array for b in batches])
    assert (np.diff(arr["seq"].astype(np.int64)) == 1).all()
    rs, re_ = arr["read_start_ns"], arr["read_end_ns"]
    assert (arr["t_start_ns"] <= rs[:, 0]).all() and (re_[:, -1] <= arr["t_end_ns"]).all()
    assert (rs <= re_).all(), "a read ends after it starts"
    assert (re_[:, :-1] <= rs[:, 1:]).all(), "channels are read one after the other, in order"
    assert (re_ - rs > 0).any(), "the stamps are real clock readings"
    vals = arr["values"][:, k]
    for value, t_write0, t_write1 in writes:
        first = int(np.argmax(vals == value))
        assert vals[first] == value and first > 0
        assert re_[first, k] >= t_write0, "the new value was read after the write began"
        assert vals[first - 1] != value and rs[first - 1, k] <= t_write1, (
            "the last old value was read (at least in part) before the write ended")


def test_drain_gives_numpy_records(three_rail_tree: Path, tmp_path: Path) -> None:
    """drain copies records into a structured numpy array whose fields are the C record's; the
    tuple view of the same records agrees with it."""
    ch = discover(three_rail_tree).channels
    ring = tmp_path / "ring"
    _native.run_channels(ring, ch, capacity=64, rate_hz=1000, max_samples=20,
                         install_signals=False)
    n = len(ch)
    with _native.RingReader(ring) as r:
        assert r.info.version == _native.RING_VERSION == 2
        assert r.info.record_size == _native.record_size(n) == 32 + 24 * n
        recs, lost = r.drain()
        again, _ = r.drain()
    assert lost == 0 and len(recs) == 20 and len(again) == 0
    a = recs.array
    assert a.dtype == _native.record_dtype(n)
    assert a.dtype.names == ("seq", "t_start_ns", "t_end_ns", "valid_mask", "values",
                             "read_start_ns", "read_end_ns")
    assert recs.values.shape == recs.read_start_ns.shape == recs.read_end_ns.shape == (20, n)
    assert list(recs.seq) == list(range(20))
    assert recs.valid().all() and (recs.valid_mask == (1 << n) - 1).all()
    rows = list(recs)
    assert [row[0] for row in rows] == list(range(20))
    assert [list(row[4:]) for row in rows] == recs.values.tolist()
    assert [row[1] for row in rows] == recs.t_start_ns.tolist()


@pytest.mark.parametrize("rate", [1e-10, -1.0, float("nan"), float("inf"), 0.5,
                                  _native.MAX_RATE_HZ * 1.01])
def test_rate_out_of_range_is_refused(three_rail_tree: Path, tmp_path: Path,
                                      rate: float) -> None:
    """A rate that is neither 0 nor within [MIN_RATE_HZ, MAX_RATE_HZ] is refused by the C side
    with a message naming the range, before any ring file exists."""
    ch = discover(three_rail_tree).channels
    ring = tmp_path / "ring"
    with pytest.raises(SamplerError, match=rf"rate .* Hz out of range: expected 0 .* or "
                                           rf"{_native.MIN_RATE_HZ} to {_native.MAX_RATE_HZ} Hz"):
        _native.run_channels(ring, ch, capacity=16, rate_hz=rate, max_samples=4,
                             install_signals=False)
    assert not ring.exists()


def test_rate_requests_go_through_c(three_rail_tree: Path, tmp_path: Path,
                                    no_leaked_children) -> None:
    """request_rate passes Hz to C: a good rate is adopted at the next pass, 0 paces at the
    ceiling, a bad one raises and changes nothing."""
    sensor = discover(three_rail_tree)

    async def scenario() -> tuple[float, float, float, int]:
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=500, fifo=False) as h:
            r = h.reader
            assert r.current_rate() == 500
            r.request_rate(250)
            await _wait_until(lambda: r.current_rate() == 250)
            with pytest.raises(SamplerError, match="out of range"):
                r.request_rate(1e-10)
            await asyncio.sleep(0.05)
            kept = r.current_rate()
            r.request_rate(0)
            await _wait_until(lambda: r.current_rate() == _native.MAX_RATE_HZ)
            r.request_rate(1000)
            await _wait_until(lambda: r.current_rate() == 1000)
            return 250.0, kept, r.current_rate(), r.counters().rate_changes

    _, kept, last, changes = asyncio.run(scenario())
    assert kept == 250 and last == 1000
    assert changes == 3


def test_rate_zero_paces_at_the_ceiling(three_rail_tree: Path, tmp_path: Path) -> None:
    """Rate 0 never free-runs: the loop paces at MAX_RATE_HZ, sleeping between passes (this
    tree's files take ~4 us a pass, so free-running would go several times faster)."""
    ch = discover(three_rail_tree).channels
    ring = tmp_path / "ring"
    cpu0 = time.thread_time()
    wall0 = time.monotonic()
    _native.run_channels(ring, ch, capacity=1 << 16, rate_hz=0, max_seconds=0.3,
                         install_signals=False)
    wall = time.monotonic() - wall0
    with _native.RingReader(ring) as r:
        assert r.info.rate_hz == _native.MAX_RATE_HZ
        assert r.info.period_ns == 1_000_000_000 // _native.MAX_RATE_HZ
        c = r.counters()
    slots = 0.3 * _native.MAX_RATE_HZ
    assert c.samples <= slots + 2
    assert c.samples + c.missed_deadlines == pytest.approx(slots, rel=0.05), (
        "every slot of the ceiling's grid is sampled or counted as missed")
    assert time.thread_time() - cpu0 < 0.95 * wall, "the loop sleeps between passes"


def test_time_limit_cuts_a_long_sleep(three_rail_tree: Path, tmp_path: Path) -> None:
    """At 1 Hz with a 0.2 s limit the loop stops at the limit, not at the next slot: one
    sample, state stopped, no stop signal."""
    ch = discover(three_rail_tree).channels
    ring = tmp_path / "ring"
    t0 = time.monotonic()
    _native.run_channels(ring, ch, capacity=16, rate_hz=1, max_seconds=0.2,
                         install_signals=False)
    took = time.monotonic() - t0
    assert 0.19 < took < 0.6
    with _native.RingReader(ring) as r:
        c = r.counters()
        assert c.state == "stopped" and c.stop_signal == 0 and c.samples == 1
        assert 0.19e9 < c.stop_monotonic_ns - r.info.start_monotonic_ns < 0.6e9
    ring.unlink()
    _native.run_channels(ring, ch, capacity=16, rate_hz=1000, max_samples=7,
                         install_signals=False)
    with _native.RingReader(ring) as r:
        c = r.counters()
        assert c.state == "stopped" and c.stop_signal == 0 and c.samples == 7


_SIGINT_AT_1HZ = """
import os, signal, sys, threading, time
from jetpower import _native
paths, names, units = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3].split(",")
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
t0 = time.monotonic()
_native.run_loop(sys.argv[4], paths, names, units, capacity=16, rate_hz=1)
took = time.monotonic() - t0
with _native.RingReader(sys.argv[4]) as r:
    c = r.counters()
    print(c.state, c.stop_signal, c.samples, f"{took:.3f}")
try:
    signal.raise_signal(signal.SIGINT)
    print("SIGINT swallowed: the sampler's handler is still installed")
except KeyboardInterrupt:
    print("handlers restored")
"""


def test_signal_stops_a_slow_loop_promptly(three_rail_tree: Path, tmp_path: Path) -> None:
    """SIGINT stops a 1 Hz loop within its 50 ms sleep slice (not at the next 1 s slot):
    state stopped, stop_signal SIGINT; Python's own handler is back afterwards."""
    ch = discover(three_rail_tree).channels
    ring = tmp_path / "ring"
    out = subprocess.run(
        [sys.executable, "-c", _SIGINT_AT_1HZ, ",".join(str(c.path) for c in ch),
         ",".join(c.name for c in ch), ",".join(c.unit for c in ch), str(ring)],
        capture_output=True, text=True, timeout=30, check=True)
    state, sig, samples, took = out.stdout.splitlines()[0].split()
    assert state == "stopped" and int(sig) == signal.SIGINT and int(samples) == 1
    assert 0.29 < float(took) < 0.5
    assert out.stdout.splitlines()[1] == "handlers restored"


def _header_offset(field: str) -> int:
    from jetpower._sampler import ffi

    return ffi.offsetof("struct jp_ring_header", field)


def test_reader_drops_the_record_after_the_one_in_flight(three_rail_tree: Path,
                                                         tmp_path: Path) -> None:
    """The torn-read guard counts two records as in flight while the writer runs: seq = 20 in
    an 8-record ring, so records 12 and 13 (slots of 20 and 21) are dropped.  Slot 13 holds a
    torn record (new values, its old seq), as a weakly ordered CPU may show it: a one-record
    margin would return it."""
    ch = discover(three_rail_tree).channels
    n = len(ch)
    ring = tmp_path / "ring"
    _native.run_channels(ring, ch, capacity=8, rate_hz=1000, max_samples=20,
                         install_signals=False)
    data = bytearray(ring.read_bytes())
    header = _header_offset("names") + 32 * (48 + 16)
    assert struct.unpack_from("<I", data, 12)[0] == header  # header_size
    rec = _native.record_size(n)
    slot13 = header + (13 % 8) * rec
    assert struct.unpack_from("<Q", data, slot13)[0] == 13
    struct.pack_into(f"<{n}q", data, slot13 + 32, *([0xDEAD] * n))  # values of record 21
    struct.pack_into("<I", data, _header_offset("state"), 1)  # the writer still running
    torn = tmp_path / "torn"
    torn.write_bytes(bytes(data))
    with _native.RingReader(torn) as r:
        recs, lost = r.drain()
    assert list(recs.seq) == list(range(14, 20)) and lost == 14
    assert not (recs.values == 0xDEAD).any()

    struct.pack_into(f"<{n}q", data, slot13 + 32, *([5] * n))
    struct.pack_into("<I", data, _header_offset("state"), 2)  # stopped: nothing in flight
    stopped = tmp_path / "stopped"
    stopped.write_bytes(bytes(data))
    with _native.RingReader(stopped) as r:
        recs, lost = r.drain()
    assert list(recs.seq) == list(range(12, 20)) and lost == 12


def _fds_and_maps(ring_dir: Path) -> tuple[int, int]:
    maps = Path("/proc/self/maps").read_text().splitlines()
    return len(os.listdir("/proc/self/fd")), sum(str(ring_dir) in line for line in maps)


def test_failures_before_the_header_leave_nothing(three_rail_tree: Path,
                                                  tmp_path: Path) -> None:
    """A loop that cannot start (a channel file missing; a ring too large for the file-size
    limit; a ring file already there) raises with the cause, removes a ring file it created
    (and only one it created), and keeps no descriptor or mapping."""
    ch = discover(three_rail_tree).channels
    paths, names, units = [str(c.path) for c in ch], [c.name for c in ch], [c.unit for c in ch]
    rings = tmp_path / "rings"
    rings.mkdir()
    before = _fds_and_maps(rings)
    with pytest.raises(SamplerError, match=r"cannot open .*absent: No such file"):
        _native.run_loop(rings / "r1", [*paths[:-1], str(tmp_path / "absent")], names, units,
                         capacity=16, rate_hz=100, max_samples=2, install_signals=False)
    assert not (rings / "r1").exists()

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, limit[1]))
        with pytest.raises(SamplerError, match=r"cannot reserve \d+ bytes for ring file .*r2: "
                                               "File too large"):
            _native.run_loop(rings / "r2", paths, names, units, capacity=100_000, rate_hz=100,
                             max_samples=2, install_signals=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert not (rings / "r2").exists(), "the half-made ring file is removed"

    (rings / "r3").write_text("keep")
    with pytest.raises(SamplerError, match=r"cannot create ring file .*r3: File exists"):
        _native.run_loop(rings / "r3", paths, names, units, capacity=16, rate_hz=100,
                         max_samples=2, install_signals=False)
    assert (rings / "r3").read_text() == "keep"
    assert _fds_and_maps(rings) == before
