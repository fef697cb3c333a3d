"""Sampler health: stalls and gaps seen as they happen, windows judged over the requested span,
rate 0 paced at the source's change period, and one sampler per CPU (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from jetpower import _native
from jetpower.acquire.decode import Decoder
from jetpower.acquire.health import GapWatch, StreamHealth, window_health
from jetpower.acquire.samples_csv import Writer
from jetpower.sensors import discover
from jetpower.sensors.simulate import create_tree
from tests.campaign import Live, jp, manifest, wait_child, write_plan

MS = 1_000_000


def test_window_health_counts_the_edges_of_the_requested_window() -> None:
    """A window sampled only in its middle is not covered: the time before the first and after
    the last sample are gaps, and the rate is samples over the requested span."""
    t = np.arange(400, 601, 1) * MS  # 1 kHz from 0.4 s to 0.6 s of a 1 s window
    h = window_health(t, 0, 1000 * MS, period_ns=MS, max_gap_ns=100 * MS)
    assert h["samples"] == 201
    assert h["achieved_rate_hz"] == pytest.approx(201.0)
    assert h["coverage"] == pytest.approx(0.201)
    assert h["largest_gap_s"] == pytest.approx(0.4)
    assert [(g["start_ns"], g["end_ns"]) for g in h["gaps"]] == [(0, 400 * MS),
                                                                (600 * MS, 1000 * MS)]
    assert h["flagged"]
    full = window_health(np.arange(0, 1001) * MS, 0, 1000 * MS, period_ns=MS,
                         max_gap_ns=100 * MS)
    assert full["coverage"] == 1.0 and not full["flagged"] and full["gaps"] == []


def test_stream_health_matches_window_health_batch_by_batch() -> None:
    """The constant-memory form gives the same verdict as the one over all stamps."""
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.integers(1, 3, 5000)) * MS
    t[2000:] += 700 * MS  # one hole of 0.7 s
    start, end = int(t[10]) - 5 * MS, int(t[-10])
    s = StreamHealth(start, end)
    for part in np.array_split(t, 37):
        s.feed(part)
    a = s.health(start, end, period_ns=MS, max_gap_ns=500 * MS)
    b = window_health(t, start, end, period_ns=MS, max_gap_ns=500 * MS)
    assert a == b and len(a["gaps"]) == 1


def test_gap_watch_warns_at_once_and_records_the_gap() -> None:
    """No record for longer than the limit: stalled while it lasts, a gap once records resume."""
    seen = []
    w = GapWatch(500 * MS, on_gap=seen.append)
    w.feed(np.arange(0, 100) * MS)
    assert not w.check(400 * MS)
    assert w.check(700 * MS) and w.stalled_at_ns == 700 * MS
    assert [(g.start_ns, g.end_ns) for g in w.within(0, 900 * MS)] == [(99 * MS, 900 * MS)]
    w.feed(np.array([1500 * MS, 1501 * MS]))
    assert w.stalled_at_ns is None
    assert [(g.start_ns, g.end_ns) for g in seen] == [(99 * MS, 1500 * MS)]
    assert w.within(0, 50 * MS) == [] and len(w.within(1000 * MS, 1200 * MS)) == 1


def test_bulk_decode_equals_record_by_record() -> None:
    """decode_batch and the CSV's bulk rows give what decode and row gave, record for record."""
    with tempfile.TemporaryDirectory() as d:
        tree = create_tree(Path(d) / "t")
        sensor = discover(tree, "simulated").select(None, None)
        ring = Path(d) / "r.ring"
        _native.run_channels(ring, sensor.channels, capacity=4096, rate_hz=2000,
                             max_samples=500, max_seconds=1.0, install_signals=False)
        with _native.RingReader(ring) as r:
            recs, _ = r.drain(4096)
    assert len(recs) == 500
    one = list(Decoder(sensor).decode(recs))
    bulk = Decoder(sensor).decode_batch(recs)
    assert list(bulk) == one
    assert all(x.read_ns and all(st is not None for st in x.read_ns) for x in one)  # ring v2
    w = Writer(sensor)
    text = w.rows_batch(bulk)
    assert text == "".join(w.row(x) for x in one)
    assert {line.count(",") + 1 for line in text.splitlines()} == {len(w.columns)}


def _sample(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "jetpower", "sample", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _wait_started(p: subprocess.Popen[str], timeout: float = 30) -> tuple[float, list[str]]:
    """Read stderr until sampler_started; the monotonic time it came and the lines so far."""
    assert p.stderr is not None
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if '"sampler_started"' in line:
            return time.monotonic(), lines
    raise AssertionError(f"sample never started: {''.join(lines)}")


@pytest.mark.parametrize("where", ["simulated", "fake_tree"])
def test_rate_zero_ends_on_time_without_overruns(where: str, tmp_path: Path,
                                                 three_rail_tree: Path) -> None:
    """sample --rate 0 --seconds 3 paces at the change period: it ends within a second of
    its 3 s with a summary, no overrun, a CSV of a sane size, and no ring left behind."""
    src = ["--simulate"] if where == "simulated" else ["--root", str(three_rail_tree)]
    out = tmp_path / "out"
    p = _sample(*src, "--rate", "0", "--seconds", "3", "--out", str(out), "--json")
    t0, _ = _wait_started(p)
    stdout, stderr = p.communicate(timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 0, stderr
    assert took < 4.0, f"ended {took:.2f} s after the sampler started"
    s = json.loads(stdout)
    assert s["overruns"] == 0 and s["covered"]
    assert s["rate_requested_hz"] == 0 and s["rate_paced_hz"] == pytest.approx(1000 / 7, rel=0.01)
    assert 2.9 * 140 < s["samples"] < 3.2 * 145
    assert (out / "samples.csv").stat().st_size < 1_000_000
    assert s["cpu_seconds"] < 1.5


def test_stalled_sample_is_not_covered(tmp_path: Path) -> None:
    """SIGSTOP of the sampler during `sample`: a sampler_stalled warning at once, the gap in the
    summary, exit status 4; with --allow-gaps the same summary and exit 0."""
    for allow in (False, True):
        out = tmp_path / f"out{allow}"
        p = _sample("--simulate", "--seconds", "3", "--out", str(out), "--json",
                    *(["--allow-gaps"] if allow else []))
        _wait_started(p)
        time.sleep(0.5)
        sampler = wait_child(p.pid, "jetpower.sampler")
        os.kill(sampler, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(sampler, signal.SIGCONT)
        stdout, stderr = p.communicate(timeout=30)
        s = json.loads(stdout)
        assert p.returncode == (0 if allow else 4), stderr
        assert not s["covered"] and s["coverage"] < 0.7
        assert s["largest_gap_s"] > 1.2
        assert len(s["gaps"]) == 1 and s["gaps"][0]["seconds"] > 1.2
        names = [(e["event"], e["level"]) for e in _events(stderr)]
        assert ("sampler_stalled", "warning") in names
        assert ("sampler_resumed", "warning") in names
        assert json.loads((out / "summary.json").read_text())["gaps"] == s["gaps"]


def test_second_sampler_on_a_held_cpu(tmp_path: Path) -> None:
    """Two jetpowers on one machine: the second, asked for the CPU the first holds, refuses and
    names the holder's pid; left to the default, it takes another CPU and says so."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    env = {"JETPOWER_LOCK_DIR": str(tmp_path)}
    first = _sample("--simulate", "--seconds", "8", "--cpu", str(cpus[-1]),
                    "--out", str(tmp_path / "a"), env=env)
    try:
        _wait_started(first)
        r = _sample("--simulate", "--seconds", "1", "--cpu", str(cpus[-1]),
                    "--out", str(tmp_path / "b"), env=env)
        _, err = r.communicate(timeout=60)
        assert r.returncode == 4, err
        assert f"pid {first.pid}" in err and f"CPU {cpus[-1]}" in err
        assert "Traceback" not in err
        r = _sample("--simulate", "--seconds", "1", "--out", str(tmp_path / "c"), "--json",
                    env=env)
        stdout, err = r.communicate(timeout=60)
        assert r.returncode == 0, err
        assert json.loads(stdout)["cpu"] != cpus[-1]
        moved = [e for e in _events(err) if e["event"] == "sampler_cpu_moved"]
        assert moved and moved[0]["level"] == "warning" and moved[0]["wanted"] == cpus[-1]
    finally:
        first.terminate()
        first.communicate(timeout=30)


#: a timing pass of a few seconds here (longer on a loaded machine: a generous timeout)
SLOW_LENET = '{name = "lenet", runs = 1500, timeout_seconds = 400}'


def _stop_sampler_during_timing(live: Live) -> None:
    """SIGSTOP the run's sampler once the worker's timing pass starts, until a stall is seen."""
    live.wait_event(lambda e: e["event"] == "worker_phase_started"
                    and e.get("phase") == "timing", timeout=120)
    sampler = wait_child(live.proc.pid, "jetpower.sampler")
    os.kill(sampler, signal.SIGSTOP)
    try:
        live.wait_event("sampler_stalled", timeout=10)
        time.sleep(1.0)
    finally:
        os.kill(sampler, signal.SIGCONT)
    live.wait_event("sampler_resumed", timeout=10)


def test_stopped_sampler_fails_the_model(tmp_path: Path) -> None:
    """SIGSTOP of the sampler during a model's timing pass: a warning at once, the gap in the
    manifest with its phase, the model is not done (on_gap = "fail"), and report says so."""
    plan = write_plan(tmp_path, [SLOW_LENET], idle=0.5, cooldown=0.2,
                      sampler='on_gap = "fail"')
    d = tmp_path / "r"
    live = Live(plan, d)
    try:
        _stop_sampler_during_timing(live)
        code = live.finish(timeout=300)
    finally:
        live.kill()
    m = manifest(d)
    lenet = m["models"]["lenet"]
    assert code != 0, live.stderr
    assert lenet["status"] == "failed" and "silent" in lenet["reason"], lenet
    assert lenet["error_type"] == "SamplerGap"
    assert lenet["sampler_gaps"] and lenet["sampler_gaps"][0]["worker_phase"] == "timing"
    (gap,) = [g for g in m["sampler_gaps"] if g["seconds"] > 1.0]
    assert gap["phase"] == "benchmark" and gap["model"] == "lenet"
    assert gap["start_ns"] < gap["end_ns"]
    bench = [p for p in m["phases"] if p["name"] == "benchmark"]
    assert bench and bench[0]["flagged"] and bench[0]["health"]["largest_gap_s"] > 1.0
    stalled = live.named("sampler_stalled")
    assert stalled and stalled[0]["level"] == "warning"
    r = jp("report", str(d), "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "sampler gap of" in text and "during benchmark of lenet" in text


def test_stopped_sampler_remeasures_the_model(tmp_path: Path) -> None:
    """on_gap = "remeasure" (the default): the gapped attempt is kept aside, the model is
    measured again, and ends done with a gap-free window."""
    plan = write_plan(tmp_path, [SLOW_LENET], idle=0.5, cooldown=0.2)
    d = tmp_path / "r"
    live = Live(plan, d)
    try:
        _stop_sampler_during_timing(live)
        code = live.finish(timeout=300)
    finally:
        live.kill()
    assert code == 0, live.stderr
    m = manifest(d)
    lenet = m["models"]["lenet"]
    assert lenet["status"] == "done" and lenet["sampler_gaps"] == []
    (again,) = live.named("model_remeasured")
    assert again["level"] == "warning" and "silent" in again["reason"]
    assert (d / "lenet.attempt-1").is_dir()
    assert any(g["model"] == "lenet" and g["seconds"] > 1.0 for g in m["sampler_gaps"])


@pytest.mark.parametrize(("extra", "message"), [
    ("max_gap_s = 0.001", r"sampler\.max_gap_s: 0\.001 s is not more than two periods"),
    ("max_gap_s = -1", r"sampler\.max_gap_s: expected a number"),
    ('on_gap = "ignore"', r'sampler\.on_gap: expected one of "remeasure", "fail", got "ignore"'),
    ("min_coverage = 1.5", r"sampler\.min_coverage: expected a number from 0 to 1, got 1\.5"),
    ("rate_hz = 1e-10", r"sampler\.rate_hz: expected a rate in Hz from 1 to 100000"),
])
def test_health_keys_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    """The health keys are validated before anything runs, naming the key, value, expectation."""
    from jetpower.errors import PlanError
    from jetpower.plan import parse_plan

    text = f'models = ["lenet"]\n[run]\nname = "t"\nresult_dir = "{tmp_path}"\n[sampler]\n{extra}\n'
    with pytest.raises(PlanError, match=message):
        parse_plan(text, base_dir=tmp_path)


def test_health_key_defaults(tmp_path: Path) -> None:
    """Defaults: the gap limit is max(0.5 s, 50 periods), re-measure once, 99 % coverage; the
    rate range is the C header's."""
    from jetpower.plan import parse_plan

    text = (f'models = ["lenet"]\n[run]\nname = "t"\nresult_dir = "{tmp_path}"\n'
            "[sampler]\nrate_hz = 20\n")
    s = parse_plan(text, base_dir=tmp_path).sampler
    assert s.max_gap_s is None and s.gap_limit_s() == 2.5 and s.gap_limit_s(1000) == 0.5
    assert s.on_gap == "remeasure" and s.min_coverage == 0.99
    assert (_native.MIN_RATE_HZ, _native.MAX_RATE_HZ) == (1, 100_000)


def test_bulk_decode_of_counter_rails_across_batches(tmp_path: Path) -> None:
    """RAPL counter power decoded in bulk, split over batches, equals the record-by-record
    decode: the first sample has none, a wrap is undone, an invalid read is spanned."""
    d = tmp_path / "sys/class/powercap/intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "max_energy_range_uj").write_text("999999\n")
    (d / "energy_uj").write_text("0\n")
    sensor = discover(tmp_path, "rapl")
    nchan = len(sensor.channels)
    vals = [900_000, 950_000, 20_000, None, 120_000, 130_000, 990_000, 5_000]
    a = np.zeros(len(vals), _native.record_dtype(nchan))
    t = np.arange(len(vals), dtype=np.int64) * 100_000_000 + 10**9
    a["seq"], a["t_start_ns"], a["t_end_ns"] = np.arange(len(vals)), t, t
    for i, v in enumerate(vals):
        a["valid_mask"][i] = 0 if v is None else 1
        a["values"][i, 0] = 0 if v is None else v
    one = list(Decoder(sensor).decode(_native.Records(a, nchan)))
    bulk = Decoder(sensor)
    got = [*bulk.decode_batch(_native.Records(a[:3], nchan)),
           *bulk.decode_batch(_native.Records(a[3:], nchan))]
    assert got == one
    assert got[0].total_uw is None and got[2].total_uw == pytest.approx(700_000)
