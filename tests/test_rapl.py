"""Intel RAPL through powercap: discovery on fake trees, counter power and counter energy.

Trees are real files under tmp_path, root-relative ``sys/class/powercap/intel-rapl:*``, read by
the real compiled sampler.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from jetpower.acquire import samples_csv
from jetpower.acquire.decode import Decoder
from jetpower.acquire.energy import CounterEnergy, Integrator
from jetpower.acquire.process import start_sampler
from jetpower.errors import SensorError
from jetpower.sensors import discover

CAP = "sys/class/powercap"
RANGE = 262143328850  # a real max_energy_range_uj


def _zone(root: Path, zone: str, name: str, energy: int, max_range: int = RANGE) -> Path:
    d = root / CAP / zone
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(f"{name}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    _write(d / "energy_uj", energy, create=True)
    return d / "energy_uj"


def _write(path: Path, value: int, create: bool = False) -> None:
    # in place (the sampler keeps its fd open), padded so a shorter number leaves no digits
    fd = os.open(path, os.O_WRONLY | (os.O_CREAT if create else 0), 0o644)
    try:
        os.pwrite(fd, f"{value:<20d}\n".encode(), 0)
    finally:
        os.close(fd)


def _server(root: Path) -> Path:
    _zone(root, "intel-rapl:0", "package-0", 1000)
    _zone(root, "intel-rapl:0:0", "core", 2000)
    _zone(root, "intel-rapl:0:1", "dram", 3000)
    _zone(root, "intel-rapl:1", "package-1", 4000)
    _zone(root, "intel-rapl:1:0", "dram", 5000)
    return root


def _rec(seq: int, t_ns: int, *vals: int | None) -> tuple[int, ...]:
    valid = sum(1 << i for i, v in enumerate(vals) if v is not None)
    return (seq, t_ns, t_ns, valid, *(0 if v is None else v for v in vals))


def test_discovery_zones_labels_and_total(tmp_path: Path) -> None:
    """Each zone is a counter rail in uJ; sub-zones are named under their package; total rule."""
    sensor = discover(_server(tmp_path), "rapl")
    assert sensor.source == "rapl"
    assert sensor.labels == ("package-0", "package-0/core", "package-0/dram", "package-1",
                             "package-1/dram")
    rail = sensor.rail("package-0")
    assert rail.derivation == "counter" and rail.power is None and rail.energy is not None
    assert rail.energy.unit == "uJ" and rail.energy.reading == "counter"
    assert rail.energy.wrap == RANGE + 1
    assert rail.energy.path == tmp_path / CAP / "intel-rapl:0" / "energy_uj"
    assert sensor.total.rails == ("package-0", "package-1", "package-0/dram", "package-1/dram")
    assert "core" in sensor.total.reason


def test_psys_is_the_total(tmp_path: Path) -> None:
    """Where a psys (platform) zone exists it is the total; the package inside it is not added."""
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    _zone(tmp_path, "intel-rapl:1", "psys", 20)
    assert discover(tmp_path, "rapl").total.rails == ("psys",)


def test_auto_picks_rapl_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto (NVML not asked for a fake root) falls to RAPL and records what it passed over."""
    monkeypatch.delenv("JETPOWER_NVML_LIB", raising=False)
    sensor = discover(_server(tmp_path))
    assert sensor.source == "rapl"
    assert "rapl is the first with rails" in sensor.selected_because
    assert "ina3221x: none under" in sensor.selected_because
    assert sensor.to_dict()["selected_because"] == sensor.selected_because


def test_no_zones_message(tmp_path: Path) -> None:
    """source="rapl" on a tree without zones names where it looked."""
    with pytest.raises(SensorError, match=r"rapl: no zone under .*sys/class/powercap"):
        discover(tmp_path, "rapl")


def test_counter_power_first_sample_none_and_wrap(tmp_path: Path) -> None:
    """Counter power: none for the first sample, d(uJ)/dt after, right across a wrap-around."""
    _zone(tmp_path, "intel-rapl:0", "package-0", 0, max_range=999_999)
    dec = Decoder(discover(tmp_path, "rapl"))
    s = 1_000_000_000
    rows = [_rec(0, 0, 900_000), _rec(1, s // 10, 950_000), _rec(2, 2 * s // 10, 20_000),
            _rec(3, 3 * s // 10, None), _rec(4, 4 * s // 10, 120_000)]
    got = [r.rails[0][2] for r in dec.decode(rows)]
    assert got[0] is None
    assert got[1] == pytest.approx(500_000)             # 50000 uJ in 0.1 s
    assert got[2] == pytest.approx(700_000)             # 20000 + 1e6 - 950000 in 0.1 s
    assert got[3] is None                               # invalid read
    assert got[4] == pytest.approx(100_000 / 0.2)       # spans the invalid read
    assert samples_csv.columns(dec.sensor) == [
        "t_ns", "package-0_uW", "package-0_uJ", "package-0_read_start_ns", "package-0_read_end_ns",
        "total_uW"]  # v2: per-read stamps


def test_counter_energy_across_wrap(tmp_path: Path) -> None:
    """CounterEnergy sums wrap-aware differences: the window energy survives a wrap-around."""
    ce = CounterEnergy(wrap_uj=1000)
    for t, v in [(0, 900), (1, 950), (2, 20), (3, None), (4, 100), (5, 990), (6, 5)]:
        ce.add(t * 1_000_000_000, v)
    assert ce.energy_uj == 50 + 70 + 80 + 890 + 15
    assert ce.count == 6 and ce.invalid == 1 and ce.span_s == 6
    assert ce.mean_uw == pytest.approx(1105 / 6)
    reset = CounterEnergy()  # no known wrap: a backwards step is a reset, left out
    for t, v in [(0, 100), (1, 200), (2, 50), (3, 80)]:
        reset.add(t, v)
    assert reset.energy_uj == 130 and reset.resets == 1


def test_sampler_reads_counters_and_energies_agree(tmp_path: Path, no_leaked_children) -> None:
    """The real sampler reads energy_uj written while it runs, across a wrap; energies agree."""
    root = tmp_path / "root"
    path = _zone(root, "intel-rapl:0", "package-0", 9_900_000, max_range=9_999_999)
    sensor = discover(root, "rapl")
    dec = Decoder(sensor)

    async def scenario() -> list[tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        async with start_sampler(sensor, tmp_path / "ring", rate_hz=1000, fifo=False) as h:
            # 2 W as 2000 uJ per ms, written every ~10 ms; wraps at 1e7 uJ every 5 s
            t0 = time.monotonic()
            end = t0 + 0.5
            while time.monotonic() < end:
                await asyncio.sleep(0.01)
                value = (9_900_000 + round((time.monotonic() - t0) * 2e6)) % 10_000_000
                _write(path, value)
                recs, _ = h.reader.drain()
                rows.extend(recs)
            await asyncio.sleep(0.02)
            rows.extend(h.reader.drain()[0])
        return rows

    rows = asyncio.run(scenario())
    assert all(r[3] == 1 for r in rows), "every counter read is valid"
    readings = list(dec.decode(rows))
    assert readings[0].rails[0][2] is None
    window = [r for r in readings if r.energy_uj[0] is not None]
    assert min(r.energy_uj[0] for r in window) < 100_000, "the counter wrapped during the run"
    assert dec.integration_rule == "hold"
    ce = CounterEnergy(dec.counter_wrap_uj("package-0"))
    integ = Integrator(dec.integration_rule)
    steps = 0.0  # counter power holds over (t_prev, t]: its step integral is the counter's energy
    for prev, r in zip([None, *window], window):
        ce.add(r.t_ns, r.energy_uj[0])
        integ.add(r.t_ns, r.rails[0][2])
        if prev is not None:
            steps += r.rails[0][2] * (r.t_ns - prev.t_ns) / 1e9
    assert ce.mean_uw == pytest.approx(2e6, rel=0.15)
    assert steps == pytest.approx(ce.energy_uj, rel=1e-9)
    # power derived from counter steps, integrated as held over each step, is the counter's energy
    # (a trapezoid would weigh each step by its neighbours' intervals: off by tens of % here)
    assert integ.energy_uj == pytest.approx(ce.energy_uj, rel=1e-9)


def test_unreadable_counter_is_reported_not_skipped(tmp_path: Path) -> None:
    """An energy_uj this user may not read raises SensorError saying how to fix it (non-root)."""
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file anyway; the next test drops privileges")
    path = _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    path.chmod(0)
    with pytest.raises(SensorError, match=r"not readable by this user.*root.*chmod.*udev"):
        discover(tmp_path)


def test_unreadable_counter_as_unprivileged_user() -> None:
    """As root, a forked child dropped to nobody gets the same clear permission message."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    top = Path(tempfile.mkdtemp(prefix="jetpower-rapl-"))  # /tmp: reachable by nobody
    try:
        top.chmod(0o755)
        path = _zone(top, "intel-rapl:0", "package-0", 10)
        for d in [top, *[p for p in path.parents if top in p.parents]]:
            d.chmod(0o755)
        path.chmod(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(r)
            msg = "no error"
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                discover(top, "rapl")
            except SensorError as e:
                msg = f"SensorError: {e}"
            except BaseException as e:  # report anything to the parent
                msg = f"{type(e).__name__}: {e}"
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        msg = b"".join(chunks).decode()
        assert msg.startswith("SensorError: RAPL energy counter"), msg
        assert "not readable by this user (Permission denied)" in msg
        assert "as root" in msg and "chmod a+r" in msg and "udev" in msg
    finally:
        shutil.rmtree(top)
