"""The simulated INA3221: conversion sequence, window means, hold, quantisation, the truth bus
that lets the worker's layers drive it, and the truth file."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jetpower.sampler.process import start_sampler

from jetpower.errors import SensorError
from jetpower.sensors import discover, truthbus
from jetpower.sensors._simpower import GAP_HOLD_NS, PowerTable, hashed_net_mw
from jetpower.sensors.simulate import HWMON, RAILS, Generator, create_tree

IDLE_IN, SHARE_IN, SUPPLY_IN = RAILS["VDD_IN"]


def _expected_ma(p_mw: float, supply_mv: float) -> int:
    """The driver's mA for a true mean power, worked out independently of the simulator: the
    supply sags by 20 mOhm x I, the shunt (5 mOhm) voltage is rounded to 40 uV steps."""
    i = p_mw / supply_mv * 1000
    v = supply_mv - 20 * i / 1000
    uv = p_mw / v * 1000 * 5000 / 1000
    return round(uv / 40) * 8


def _expected_mv(p_mw: float, supply_mv: float) -> int:
    i = p_mw / supply_mv * 1000
    return round((supply_mv - 20 * i / 1000) / 8) * 8


def _marks(bus: Path, names: list[str], spans: list[tuple[int, int, int]]) -> None:
    pub = truthbus.Publisher(bus, names)
    for layer, t0, t1 in spans:
        pub.begin(layer, t0)
        pub.end(layer, t1)
    pub.close()


def test_values_are_quantised_window_means_of_the_published_power(tmp_path: Path) -> None:
    """Each conversion's value is the mean of the true power over its own window (the time since
    the previous conversion ended), in 8 mA / 8 mV steps; a layer's power counts only for the part
    of a window it ran in, and after it the gap level holds for GAP_HOLD_NS."""
    root = create_tree(tmp_path / "tree")
    bus = truthbus.create(tmp_path / "bus")
    t = 10_000_000_000
    gen = Generator(root, seed=1, t_start_ns=t, bus=bus, follow_cpu=False, noise=False,
                    offset=0.0, table=PowerTable({"hot": 2000.0}, gap_mw=100.0))
    gen.osc.drift = 0.0
    _marks(bus, ["hot"], [(0, t + 2_000_000, t + 9_000_000)])
    hot = (t + 2_000_000, t + 9_000_000)
    rows = []
    for _ in range(40):
        k, slot, a, b, net, value = gen.convert(gen.seq.end)
        rows.append((k, slot, a, b, net, value))
        in_hot = max(0, min(b, hot[1]) - max(a, hot[0]))
        in_gap = max(0, min(b, hot[1] + GAP_HOLD_NS) - max(a, hot[1]))
        assert net == pytest.approx((2000.0 * in_hot + 100.0 * in_gap) / (b - a), rel=1e-9)
        if slot % 2 == 0:
            rail = gen.rails[gen.chip.enabled[slot // 2]]
            assert value == _expected_ma(rail.idle_mw + rail.share * net, rail.supply_mv)
            assert value % 8 == 0
            f = root / HWMON / f"curr{rail.channel}_input"
        else:
            rail = gen.rails[gen.chip.enabled[slot // 2]]
            assert value == _expected_mv(rail.idle_mw + rail.share * net, rail.supply_mv)
            assert value % 8 == 0
            f = root / HWMON / f"in{rail.channel}_input"
        assert int(f.read_text()) == value, "the file holds the conversion's value"
    # windows are back to back, in the chip's order, 1100 us each (offset 0, no drift)
    for (k0, s0, _, b0, _, _), (k1, s1, a1, b1, _, _) in itertools.pairwise(rows):
        assert k1 == k0 + 1 and s1 == (s0 + 1) % 6 and a1 == b0
        assert b1 - a1 == 1_100_000
    assert gen.truth(final=True, now_ns=0)["layers"]["hot"]["executions"] == 1


def test_clock_offset_and_drift_set_the_conversion_times(tmp_path: Path) -> None:
    """The chip's clock runs off by its offset and drifts around it: conversion durations are
    nominal x (1 + offset +/- drift), and they change over time."""
    root = create_tree(tmp_path / "tree")
    gen = Generator(root, seed=5, t_start_ns=0, follow_cpu=False, offset=0.02)
    gen.osc.period_s = 0.5  # a fast drift, so a few seconds of conversions show it
    gen.osc.drift = 0.004
    durations = []
    for _ in range(3000):
        _, _, a, b, _, _ = gen.convert(gen.seq.end)
        durations.append((b - a) / 1_100_000)
    body = durations[1:]
    assert min(body) >= 1.02 - 0.0041 and max(body) <= 1.02 + 0.0041
    assert max(body) - min(body) > 0.006, "the drift moves the period"


def test_ina3221_tree_reading_model_matches_the_simulated_chip(tmp_path: Path) -> None:
    """Discovery describes the simulated rails as window means on the schedule the generator
    runs (it reads the same driver files); a one-channel, 1 ms setting changes both."""
    root = create_tree(tmp_path / "tree")
    hw = root / HWMON
    for n in (2, 3):
        (hw / f"in{n}_enable").write_text("0\n")
    (hw / "update_interval").write_text("1\n")
    sensor = discover(root, "simulated")
    assert sensor.labels == ("VDD_IN",)
    model = sensor.rails[0].to_dict()["reading_models"]["current"]
    gen = Generator(root, seed=2, t_start_ns=0, follow_cpu=False)
    assert model["kind"] == "window_mean" and model["held"] is True
    assert model["window_us"] == gen.chip.window_us == 588
    assert model["schedule"]["period_us_nominal"] == gen.chip.period_us == 1176
    assert model["quantum"] == 8.0
    assert [gen.convert(gen.seq.end)[1] for _ in range(4)] == [0, 1, 0, 1]


def _run_sim(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-m", "jetpower.sensors.simulate",
                          str(tmp_path / "tree"), "--seed", "7", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == b"ready"
    return p


def _log(path: Path) -> list[dict[str, int]]:
    with path.open() as f:
        return [{k: int(float(v)) if k != "quantity" else v for k, v in r.items()}  # type: ignore[misc]
                for r in csv.DictReader(f)]


def test_real_sampler_sees_changes_only_at_conversion_ends(tmp_path: Path,
                                                           no_leaked_children) -> None:
    """Read by the real sampler at 4 kHz, VDD_IN's current changes only when a CH1 shunt
    conversion was written, every value read is one such conversion's value (or the file's
    first), and those conversions recur at the chip's period."""
    create_tree(tmp_path / "tree")
    sensor = discover(tmp_path / "tree", "simulated")
    col = 4 + [c.name for c in sensor.channels].index("VDD_IN.mA")
    p = _run_sim(tmp_path, "--conversions", str(tmp_path / "conv.csv"))

    async def scenario() -> list[tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=4000, fifo=False) as h:
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                await asyncio.sleep(0.05)
                recs, lost = h.reader.drain()
                assert lost == 0
                rows.extend(recs)
        return rows

    try:
        rows = asyncio.run(scenario())
    finally:
        p.terminate()
        p.wait(10)
    conv = [r for r in _log(tmp_path / "conv.csv") if r["slot"] == 0]
    assert len(conv) > 150
    written = [c["written_ns"] for c in conv]
    values = {c["value"] for c in conv}
    first = rows[0][col]
    changes = 0
    slack = 2_000_000  # the writer stamps written_ns just after its pwrite returns
    for prev, cur in itertools.pairwise(rows):
        assert cur[col] in values or cur[col] == first
        if cur[col] != prev[col]:
            changes += 1
            lo, hi = prev[1], cur[2] + slack
            assert any(lo <= w <= hi for w in written), (
                f"value changed between {prev[1]} and {cur[2]} with no conversion written")
    assert changes > 20
    ends = [c["end_ns"] for c in conv]
    periods = [b - a for a, b in itertools.pairwise(ends)]
    assert all(6_600_000 * 0.96 < d < 6_600_000 * 1.04 for d in periods)


def test_published_layers_drive_power_and_truth_file(tmp_path: Path, no_leaked_children) -> None:
    """Layers published on the truth bus set the simulated power: conversions inside a 'hot'
    layer read its table power, inside a 'cold' one theirs; the truth file names both with
    their power, executions and durations, and the schedule the conversions followed."""
    create_tree(tmp_path / "tree")
    bus = truthbus.create(tmp_path / "bus")
    (tmp_path / "table.json").write_text(json.dumps({"layers": {"hot": 3000, "cold": 500},
                                                     "gap_mw": 0}))
    p = _run_sim(tmp_path, "--truth-bus", str(bus), "--truth", str(tmp_path / "truth.json"),
                 "--power-table", str(tmp_path / "table.json"),
                 "--conversions", str(tmp_path / "conv.csv"))
    pub = truthbus.Publisher(bus, ["hot", "cold"])
    spans = []
    try:
        for _ in range(20):
            for layer in (0, 1):
                t0 = time.monotonic_ns()
                pub.begin(layer, t0)
                time.sleep(0.02)
                t1 = time.monotonic_ns()
                pub.end(layer, t1)
                spans.append((layer, t0, t1))
        time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(10)
    pub.close()
    conv = [r for r in _log(tmp_path / "conv.csv") if r["slot"] == 0]
    inside = {0: [], 1: []}
    for c in conv:
        for layer, t0, t1 in spans:
            if t0 <= c["start_ns"] and c["end_ns"] <= t1:
                inside[layer].append(c)
    truth = json.loads((tmp_path / "truth.json").read_text())
    missed = 0
    for layer, net in ((0, 3000), (1, 500)):
        assert len(inside[layer]) > 30
        want = _expected_ma(IDLE_IN + SHARE_IN * net, SUPPLY_IN)
        exact = [c for c in inside[layer] if c["net_mw"] == net]
        missed += len(inside[layer]) - len(exact)
        assert all(abs(c["value"] - want) <= 16 for c in exact), "noise is < 2 LSB"
    # a window can miss a mark only when the mark came late (this process was preempted between
    # stamping it and publishing it), and the truth file counts every such mark
    assert (missed == 0 or truth["bus"]["late_marks"] > 0) and missed <= 0.1 * len(conv)
    assert truth["format"] == "jetpower.simulator-truth" and truth["version"] == 1
    assert truth["final"] is True and truth["simulated"] is True
    hot, cold = truth["layers"]["hot"], truth["layers"]["cold"]
    assert hot["net_mw"] == 3000 and cold["net_mw"] == 500
    assert hot["executions"] == cold["executions"] == 20
    mean_hot = sum(t1 - t0 for layer, t0, t1 in spans if layer == 0) / 20
    assert hot["mean_duration_ns"] == pytest.approx(mean_hot, rel=1e-9)
    assert {k: truth["bus"][k] for k in ("marks", "lost", "unknown_marks", "unmatched_ends")} \
        == {"marks": 80, "lost": 0, "unknown_marks": 0, "unmatched_ends": 0}
    chip = truth["chip"]
    assert chip["period_ns_nominal"] == 6_600_000 and chip["order"][:2] == ["CH1 shunt",
                                                                            "CH1 bus"]
    assert abs(chip["oscillator"]["offset"]) <= 0.03
    by_k = {r["k"]: r for r in _log(tmp_path / "conv.csv")}
    assert chip["anchors"] and all(by_k[a["k"]]["end_ns"] == a["end_ns"]
                                   for a in chip["anchors"])
    assert chip["conversions"] == len(by_k)
    assert truth["idle_mw"] == IDLE_IN and truth["total_rail"] == "VDD_IN"


def test_hash_rule_is_the_documented_one() -> None:
    """A layer without a table entry gets 300 + 2700 x (first 4 bytes of SHA-256 / 2^32) mW."""
    for name in ("conv1", "features.0", "[CONVOLUTION]-[aten_ops]-[/conv1]"):
        u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
        assert hashed_net_mw(name) == pytest.approx(300 + 2700 * u)
        assert PowerTable({"other": 1.0}).net_mw(name) == hashed_net_mw(name)
    assert PowerTable({"conv1": 42.0}).net_mw("conv1") == 42.0


def test_truth_bus_round_trip_and_tables(tmp_path: Path) -> None:
    """Marks come out in order with their names table; a second publisher (the next model)
    gets a new table and continues the sequence; a torn slot is not taken until it is whole."""
    bus = truthbus.create(tmp_path / "bus", slots=64)
    sub = truthbus.Subscriber(bus)
    _marks(bus, ["a", "b"], [(0, 10, 20), (1, 20, 35)])
    got = sub.poll()
    assert [(m.kind, m.layer, m.t_ns) for m in got] == [
        (truthbus.BEGIN, 0, 10), (truthbus.END, 0, 20), (truthbus.BEGIN, 1, 20),
        (truthbus.END, 1, 35)]
    assert sub.names(got[0].table) == ("a", "b")
    pub = truthbus.Publisher(bus, ["x"])
    assert pub.table == got[0].table + 1
    pub.begin(0, 50)
    with open(bus, "r+b") as f:  # tear the slot just written: one byte of its time
        at = truthbus.HEADER_BYTES + 4 * truthbus.SLOT_BYTES + 8
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert sub.poll() == []
    pub._seq -= 1  # the writer finishes the slot
    pub.begin(0, 50)
    (m,) = sub.poll()
    assert (m.seq, m.t_ns, sub.names(m.table)) == (4, 50, ("x",))
    pub.close()
    sub.close()


def test_truth_bus_overrun_is_counted(tmp_path: Path) -> None:
    """A reader that falls more than the ring behind loses the oldest marks and counts them."""
    bus = truthbus.create(tmp_path / "bus", slots=16)
    sub = truthbus.Subscriber(bus)
    _marks(bus, ["a"], [(0, t, t + 1) for t in range(0, 40, 2)])  # 40 marks
    got = sub.poll()
    assert sub.lost + len(got) == 40 and sub.lost >= 24
    assert [m.seq for m in got] == list(range(40 - len(got), 40))


def test_truth_bus_bad_files_are_refused(tmp_path: Path) -> None:
    """Not a bus, another version, or a names table too big: clear messages."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 4096)
    with pytest.raises(SensorError, match="not a truth bus"):
        truthbus.Subscriber(junk)
    bus = truthbus.create(tmp_path / "bus", slots=16, names_bytes=4096)
    with pytest.raises(SensorError, match="need"):
        truthbus.Publisher(bus, [f"layer{i:04d}" for i in range(1000)])
    with open(bus, "r+b") as f:
        f.seek(8)
        f.write((99).to_bytes(4, "little"))
    with pytest.raises(SensorError, match="format version 99"):
        truthbus.Subscriber(bus)
    with pytest.raises(SensorError, match="cannot create"):
        truthbus.create(bus)


def test_simulator_bad_input_says_what(tmp_path: Path) -> None:
    """A missing bus or a bad power table: one line naming the problem, no traceback."""
    create_tree(tmp_path / "tree")
    r = subprocess.run([sys.executable, "-m", "jetpower.sensors.simulate", str(tmp_path / "tree"),
                        "--truth-bus", str(tmp_path / "nope")], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode != 0 and "cannot open the truth bus" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "t.json").write_text('{"layers": {"a": -1}}')
    r = subprocess.run([sys.executable, "-m", "jetpower.sensors.simulate", str(tmp_path / "tree"),
                        "--power-table", str(tmp_path / "t.json")], capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode != 0 and "non-negative mW" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.torch
def test_torch_worker_publishes_its_layers(tmp_path: Path) -> None:
    """With truth_bus set, the torch backend on CPU publishes a begin and an end mark for every
    layer of every profiled run, on the clock its own latencies come from."""
    pytest.importorskip("torch")
    from jetpower.worker.config import WorkerConfig
    from jetpower.worker.profile import LayerProfile
    from jetpower.worker.torch_backend import TorchBackend

    bus = truthbus.create(tmp_path / "bus")
    sub = truthbus.Subscriber(bus)
    cfg = WorkerConfig(model="lenet", result_dir=str(tmp_path), backend="torch", device="cpu",
                       dtype="float32", truth_bus=str(bus))
    backend = TorchBackend(cfg)
    backend.load()
    names = backend.prepare_profiling()
    prof = LayerProfile(names, 2)
    for run in range(2):
        backend.profile_run(prof, run)
    backend.end_profiling()
    marks = sub.poll()
    assert len(marks) == 2 * 2 * len(names)
    assert sub.names(marks[0].table) == tuple(names)
    for run in range(2):
        for i in range(len(names)):
            b, e = marks[(run * len(names) + i) * 2: (run * len(names) + i) * 2 + 2]
            assert (b.kind, e.kind, b.layer, e.layer) == (truthbus.BEGIN, truthbus.END, i, i)
            assert (e.t_ns - b.t_ns) / 1e6 == pytest.approx(float(prof.lat_ms[run, i]),
                                                            rel=1e-6, abs=1e-6)
    assert prof.start_ns[0] <= marks[0].t_ns and marks[-1].t_ns <= prof.end_ns[1]
    off = TorchBackend(WorkerConfig(model="lenet", result_dir=str(tmp_path), backend="torch",
                                    device="cpu", dtype="float32"))
    off.load()
    off.prepare_profiling()
    assert off._bus is None, "nothing is published without truth_bus"


@pytest.mark.torch
def test_worker_layers_reach_the_simulator_truth(tmp_path: Path, no_leaked_children) -> None:
    """End to end through real processes and clocks: the torch worker's profiled lenet runs
    drive the running simulator; its truth file lists every layer with the executions and the
    mean duration the worker measured, and the conversions during the pass average only layer
    and gap power (no background)."""
    pytest.importorskip("torch")
    from jetpower.worker.config import WorkerConfig
    from jetpower.worker.profile import LayerProfile
    from jetpower.worker.torch_backend import TorchBackend

    create_tree(tmp_path / "tree")
    bus = truthbus.create(tmp_path / "bus")
    cfg = WorkerConfig(model="lenet", result_dir=str(tmp_path), backend="torch", device="cpu",
                       dtype="float32", truth_bus=str(bus))
    backend = TorchBackend(cfg)
    backend.load()
    p = _run_sim(tmp_path, "--truth-bus", str(bus), "--truth", str(tmp_path / "truth.json"),
                 "--conversions", str(tmp_path / "conv.csv"))
    runs = 100
    try:
        names = backend.prepare_profiling()
        prof = LayerProfile(names, runs)
        for run in range(runs):
            backend.profile_run(prof, run)
        backend.end_profiling()
        time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(10)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth["layers"]) == set(names)
    table = PowerTable()
    for i, name in enumerate(names):
        got = truth["layers"][name]
        assert got["executions"] == runs and got["net_mw"] == table.net_mw(name)
        assert got["mean_duration_ns"] / 1e6 == pytest.approx(
            float(prof.lat_ms[:, i].mean()), rel=1e-3)
    levels = {table.net_mw(n) for n in names} | {table.gap_mw}
    during = [r for r in _log(tmp_path / "conv.csv")
              if prof.start_ns[0] <= r["start_ns"] and r["end_ns"] <= prof.end_ns[-1]]
    assert during, "the pass spans conversions"
    lo, hi = min(levels), max(levels)
    assert all(lo - 1 <= r["net_mw"] <= hi + 1 for r in during)
