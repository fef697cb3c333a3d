"""NVML power source: discovery and the real compiled sampler against a fake libnvidia-ml.so.1.

The fake (tests/fake_nvml/fake_nvml.c) is compiled here with gcc and loaded through
``JETPOWER_NVML_LIB``; its answers are scripted by ``FAKE_NVML_MODE`` and ``FAKE_NVML_COUNT``
(see the file).  Per GPU i and call k: instant power 100000 + 10000 i + 3 k mW, power usage
90000 + 10000 i + 5 k mW, energy 1000000 + 7 k mJ.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jetpower import _native
from jetpower.acquire import probe, samples_csv
from jetpower.acquire.decode import Decoder
from jetpower.acquire.energy import CounterEnergy
from jetpower.acquire.process import start_sampler
from jetpower.errors import SamplerError, SensorError
from jetpower.sensors import SensorSet, discover

FAKE_SRC = Path(__file__).parent / "fake_nvml" / "fake_nvml.c"


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake NVML library, compiled once per session."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the fake NVML library")
    out = tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(out), str(FAKE_SRC)],
                   check=True)
    return out


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, fake_nvml_lib: Path):
    """Point jetpower (and the sampler child it spawns) at the fake; returns a mode setter."""
    monkeypatch.setenv("JETPOWER_NVML_LIB", str(fake_nvml_lib))
    monkeypatch.setenv("FAKE_NVML_MODE", "ok")
    monkeypatch.setenv("FAKE_NVML_COUNT", "1")

    def configure(mode: str = "ok", count: int = 1) -> None:
        monkeypatch.setenv("FAKE_NVML_MODE", mode)
        monkeypatch.setenv("FAKE_NVML_COUNT", str(count))

    return configure


def _run_sampler(sensor: SensorSet, ring: Path, n: int = 50) -> list[tuple[int, ...]]:
    async def scenario() -> list[tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        async with start_sampler(sensor, ring, rate_hz=1000, fifo=False) as h:
            end = time.monotonic() + 10
            while len(rows) < n and time.monotonic() < end:
                recs, lost = h.reader.drain()
                assert lost == 0
                rows.extend(recs)
                await asyncio.sleep(0.01)
        return rows

    return asyncio.run(scenario())


def test_discovery_describes_each_gpu(nvml, tmp_path: Path) -> None:
    """source="nvml": one rail per GPU, instant power in mW, the energy counter in mJ, summed."""
    nvml(count=2)
    sensor = discover(tmp_path, "nvml")
    assert sensor.source == "nvml" and sensor.labels == ("GPU0", "GPU1")
    gpu0 = sensor.rail("GPU0")
    assert gpu0.derivation == "power"
    assert gpu0.power is not None and gpu0.energy is not None
    assert str(gpu0.power.path) == "nvml:0:power_instant" and gpu0.power.unit == "mW"
    assert gpu0.power.reading == "instant" and gpu0.power.kind == "nvml"
    assert str(gpu0.energy.path) == "nvml:0:energy" and gpu0.energy.unit == "mJ"
    assert gpu0.energy.reading == "counter"
    assert "Fake GPU 0" in gpu0.device
    assert sensor.total.rails == ("GPU0", "GPU1")
    assert "named explicitly" in sensor.selected_because
    assert sensor.to_dict()["rails"][0]["readings"] == {"power": "instant", "energy": "counter"}


def test_sampler_reads_instant_power_and_energy(nvml, tmp_path: Path,
                                                no_leaked_children) -> None:
    """The real sampler's passes carry the latest readings of a poller thread: power every 10 ms,
    the slow energy counter every 50 ms (one read costs ~4 ms on an H100)."""
    nvml(count=2)
    sensor = discover(tmp_path, "nvml")
    names = [c.name for c in sensor.channels]
    assert names == ["GPU0.mW", "GPU0.mJ", "GPU1.mW", "GPU1.mJ"]
    rows = _run_sampler(sensor, tmp_path / "ring", n=200)
    assert len(rows) >= 200 and rows[0][0] == 0
    assert all(r[3] == 0b1111 for r in rows), "every NVML read is valid"
    for col, base, step, at_least in ((4, 100000, 3, 10), (6, 110000, 3, 10),
                                      (5, 1000000, 7, 3), (7, 1000000, 7, 3)):
        values = [r[col] for r in rows]
        assert all((v - base) % step == 0 for v in values), "only values NVML returned"
        assert values == sorted(values), "in the order NVML returned them"
        # 200 passes at 1 kHz span ~200 ms: ~20 power polls, ~4 counter polls
        assert len(set(values)) >= at_least
        assert len(set(values)) < len(values) / 2, "NVML is not called on every pass"


def test_field_unsupported_falls_back_to_power_usage(nvml, tmp_path: Path,
                                                     no_leaked_children) -> None:
    """When the instant-power field is NOT_SUPPORTED, nvmlDeviceGetPowerUsage is read instead."""
    nvml("nofield")
    sensor = discover(tmp_path, "nvml")
    power = sensor.rail("GPU0").power
    assert power is not None
    assert str(power.path) == "nvml:0:power_avg" and power.reading == "window_mean"
    assert "NVML_ERROR_NOT_SUPPORTED" in power.about
    rows = _run_sampler(sensor, tmp_path / "ring", n=20)
    values = [r[4] for r in rows]
    assert all((v - 90000) % 5 == 0 for v in values) and values == sorted(values)


def test_jetson_like_nvml_is_not_a_power_source(nvml, tmp_path: Path) -> None:
    """NVML that initialises but answers NOT_SUPPORTED to power (Jetson) is refused, saying why."""
    nvml("jetson")
    with pytest.raises(SensorError, match=r"NOT_SUPPORTED.*|Jetson") as e:
        discover(tmp_path, "nvml")
    assert "as on Jetson" in str(e.value) and "not a power source" in str(e.value)
    with pytest.raises(SensorError, match="no power sensor found") as e:
        discover(tmp_path)
    assert "nvml: NVML" in str(e.value)


def test_energy_counter_optional(nvml, tmp_path: Path) -> None:
    """A GPU without the energy counter is still a power rail, without an energy channel."""
    nvml("noenergy")
    rail = discover(tmp_path, "nvml").rail("GPU0")
    assert rail.power is not None and rail.energy is None


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """No NVML library: source="nvml" says it cannot load it, naming the library."""
    monkeypatch.setenv("JETPOWER_NVML_LIB", str(tmp_path / "libnvidia-ml.so.1"))
    with pytest.raises(SensorError, match=r"cannot load the NVML library .*libnvidia-ml\.so\.1"):
        discover(tmp_path, "nvml")


def test_init_failure_names_the_nvml_error(nvml, tmp_path: Path) -> None:
    """nvmlInit_v2 failing is reported with NVML's own text and code name."""
    nvml("initfail")
    with pytest.raises(SensorError, match="nvmlInit_v2 failed: Driver Not Loaded "
                                          r"\(NVML_ERROR_DRIVER_NOT_LOADED, code 9\)"):
        discover(tmp_path, "nvml")


def test_sampler_without_library_fails_clearly(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """The C loop refuses to start on an NVML channel when the library cannot be loaded."""
    monkeypatch.setenv("JETPOWER_NVML_LIB", str(tmp_path / "absent.so"))
    with pytest.raises(SamplerError, match="cannot load the NVML library"):
        _native.run_loop(tmp_path / "ring", ["nvml:0:energy"], ["GPU0.mJ"], ["mJ"],
                         capacity=16, rate_hz=0, max_samples=4, install_signals=False)


def test_malformed_nvml_channel_is_rejected(nvml, tmp_path: Path) -> None:
    """A channel spelled nvml:<index>:<what> with an unknown <what> is an error, not a file."""
    with pytest.raises(SamplerError, match="bad NVML channel nvml:0:volts"):
        _native.run_loop(tmp_path / "ring", ["nvml:0:volts"], ["x"], ["mW"],
                         capacity=16, rate_hz=0, max_samples=4, install_signals=False)


def test_decoder_power_and_counter_energy(nvml, tmp_path: Path, no_leaked_children) -> None:
    """NVML power decodes to uW; the counter's window energy is last minus first, in uJ."""
    sensor = discover(tmp_path, "nvml")
    rows = _run_sampler(sensor, tmp_path / "ring", n=30)
    dec = Decoder(sensor)
    assert samples_csv.columns(sensor) == ["t_ns", "GPU0_uW", "GPU0_uJ", "GPU0_read_start_ns",
                                           "GPU0_read_end_ns", "total_uW"]  # v2: read stamps
    assert dec.counter_rails == ("GPU0",)
    readings = list(dec.decode(rows))
    assert [r.rails[0][2] for r in readings] == [row[4] * 1000.0 for row in rows]
    ce = CounterEnergy(dec.counter_wrap_uj("GPU0"))
    for r in readings[5:25]:
        ce.add(r.t_ns, r.energy_uj[0])
    # the counter comes from the poller: the window's energy is its last minus its first reading
    assert ce.energy_uj == (rows[24][5] - rows[5][5]) * 1000 and ce.count == 20
    assert samples_csv.Writer(sensor).row(readings[0]).split(",")[2] == str(rows[0][5] * 1000)


def test_probe_measures_nvml_channels(nvml, tmp_path: Path) -> None:
    """probe times NVML reads and sees the instant power and the counter change per pass."""
    sensor = discover(tmp_path, "nvml")
    costs = probe.read_cost(sensor, reads=50)
    assert costs["GPU0"]["read_us_median"] > 0
    changes = probe.change_periods(sensor, seconds=0.1)["GPU0"]
    assert changes["passes"] > 10
    per = changes["channels"]
    assert per["GPU0.mW"]["reading"] == "instant" and per["GPU0.mJ"]["reading"] == "counter"
    power, energy = per["GPU0.mW"], per["GPU0.mJ"]
    assert 1 <= energy["changes"] <= power["changes"] < changes["passes"] - 1, (
        "power at the poller's 10 ms pace, the counter at its 50 ms pace")
    for ch in (power, energy):
        assert ch["invalid_reads"] == 0 and ch["change_period_ms"] is not None


def test_auto_order_jetson_first_then_nvml(nvml, three_rail_tree: Path, tmp_path: Path) -> None:
    """auto keeps the INA3221 on a Jetson tree and picks NVML on an empty root, saying why."""
    on_jetson = discover(three_rail_tree)
    assert on_jetson.source == "ina3221" and on_jetson.selected_because.startswith("auto")
    empty = tmp_path / "empty"
    empty.mkdir()
    gpu = discover(empty)
    assert gpu.source == "nvml"
    assert "ina3221: none under" in gpu.selected_because
    assert [str(c.path) for c in gpu.channels] == ["nvml:0:power_instant", "nvml:0:energy"]


def test_power_log_equivalent_without_voltage(nvml, tmp_path: Path) -> None:
    """A source without voltage writes the power log as 1000 mV x (power in mW): uW product."""
    from jetpower.acquire.decode import NOMINAL_MV
    from jetpower.acquire.power_log import power_log_line
    from jetpower.timebase import Anchor

    sensor = discover(tmp_path, "nvml")
    rows = _run_sampler(sensor, tmp_path / "ring", n=5)
    dec = Decoder(sensor)
    assert "nominal 1000" in dec.log_columns_note
    r = next(iter(dec.decode(rows[:1])))
    line = power_log_line(r, Anchor.now())
    assert line is not None
    _, mv, ma = line.strip().split(",")
    assert int(mv) == NOMINAL_MV
    assert int(mv) * float(ma) == pytest.approx(r.total_uw)


def _run_sampler_records(sensor: SensorSet, ring: Path, n: int) -> np.ndarray:
    async def scenario() -> np.ndarray:
        parts: list[np.ndarray] = []
        got = 0
        async with start_sampler(sensor, ring, rate_hz=1000, fifo=False) as h:
            end = time.monotonic() + 10
            while got < n and time.monotonic() < end:
                recs, lost = h.reader.drain()
                assert lost == 0
                parts.append(recs.array)
                got += len(recs)
                await asyncio.sleep(0.01)
        return np.concatenate(parts)

    return asyncio.run(scenario())


def test_nvml_stamps_are_the_pollers_calls(nvml, tmp_path: Path, no_leaked_children) -> None:
    """An NVML channel's read stamps bracket the poller's NVML call that returned the value:
    they change exactly when the value does, and the call ended before the pass copied it."""
    sensor = discover(tmp_path, "nvml")
    a = _run_sampler_records(sensor, tmp_path / "ring", 300)
    assert len(a) >= 300
    for k in range(len(sensor.channels)):
        vals, rs, re_ = a["values"][:, k], a["read_start_ns"][:, k], a["read_end_ns"][:, k]
        assert (rs > 0).all() and (rs <= re_).all()
        assert (re_ <= a["t_end_ns"]).all(), "the poll ended before the pass copied its value"
        changed = np.diff(vals) != 0
        assert changed.any()
        assert (changed == (np.diff(rs) != 0)).all(), "one NVML call, one value, one stamp"
        assert (np.diff(rs) >= 0).all()
    power, energy = a["read_start_ns"][:, 0], a["read_start_ns"][:, 1]
    assert len(set(power.tolist())) > len(set(energy.tolist())), "two paces, two stamp series"


def _cpus(listing: str) -> set[int]:
    out: set[int] = set()
    for part in listing.strip().split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_poller_thread_keeps_off_the_loops_cpu(nvml, tmp_path: Path,
                                               no_leaked_children) -> None:
    """The sampler process's NVML poller thread may run on any CPU but the one the loop is
    pinned to: its slow NVML calls can then never hold the loop off."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    sensor = discover(tmp_path, "nvml")

    async def scenario() -> tuple[int, dict[str, set[int]]]:
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=1000, fifo=False) as h:
            await asyncio.sleep(0.1)
            pid = h.proc.pid
            threads = {}
            for task in Path(f"/proc/{pid}/task").iterdir():
                status = (task / "status").read_text()
                line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list"))
                name = (task / "comm").read_text().strip()
                threads[name if int(task.name) != pid else "loop"] = _cpus(line.split(":")[1])
            return h.cpu, threads

    cpu, threads = asyncio.run(scenario())
    assert threads["loop"] == {cpu}, "the loop runs pinned"
    assert threads["jp-nvml-poller"], "a poller thread runs"
    assert cpu not in threads["jp-nvml-poller"], threads


_POLLER_FAILS = """
import os, signal, sys
from jetpower.errors import SamplerError
from jetpower import _native
ring, lib = sys.argv[1], os.environ["JETPOWER_NVML_LIB"]
def leaks():
    maps = open("/proc/self/maps").read()
    return (len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")),
            maps.count(ring), maps.count(lib))
args = (["nvml:0:power_instant", "nvml:0:energy"], ["GPU0.mW", "GPU0.mJ"], ["mW", "mJ"])
before = leaks()
_native.inject_fault_for_tests("poller", 11)
try:
    _native.run_loop(ring, *args, capacity=16, rate_hz=1000)
    print("no error")
except SamplerError as e:
    print(e)
print("leaks", [a - b for a, b in zip(leaks(), before)])
with _native.RingReader(ring) as r:
    c = r.counters()
    print("ring", r.ready(), c.state, c.samples, c.stop_monotonic_ns > 0)
try:
    signal.raise_signal(signal.SIGINT)
    print("SIGINT swallowed: the sampler's handler is still installed")
except KeyboardInterrupt:
    print("handlers restored")
_native.run_loop(ring + ".2", *args, capacity=16, rate_hz=1000, max_samples=5,
                 install_signals=False)
with _native.RingReader(ring + ".2") as r:
    print("then", r.counters().state, r.counters().samples)
"""


def test_poller_start_failure_fails_cleanly(nvml, tmp_path: Path) -> None:
    """When the NVML poller thread cannot start, after the ring's header exists: the error
    names the cause, the header says FAILED (readers see it), the signal handlers are the
    previous ones again, NVML is unloaded, and no descriptor, mapping or thread is left; the
    next loop in the same process runs normally."""
    ring = tmp_path / "ring"
    out = subprocess.run([sys.executable, "-c", _POLLER_FAILS, str(ring)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("cannot start the NVML poller thread: Resource temporarily "
                        "unavailable")
    assert lines[1] == "leaks [0, 0, 0, 0]"
    assert lines[2] == "ring True failed 0 True"
    assert lines[3] == "handlers restored"
    assert lines[4] == "then stopped 5"
