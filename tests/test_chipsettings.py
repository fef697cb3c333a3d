"""INA3221 settings for per-layer work: plan keys, the driver's write rule, apply and restore on
fake sysfs trees (real files written and read back), through real `jetpower run` processes that
end normally, get SIGTERM or SIGKILL, and as an unprivileged user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from jetpower.campaign.preflight import settings_problems
from jetpower.errors import PlanError, SensorError
from jetpower.plan import parse_plan
from jetpower.sensors import chipsettings as cs
from jetpower.sensors import discover
from jetpower.sensors.simulate import write_tree
from tests.campaign import Live, assert_no_orphans, jp, manifest
from tests.conftest import load_board

HW = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"  # the Orin Nano fixture's chip


def _tree(top: Path, board: str = "orin_nano_jp6") -> Path:
    b = load_board(board)
    write_tree(top, b["files"], b.get("symlinks", {}))
    return top


def _files(root: Path) -> dict[str, str]:
    hw = root / HW
    names = ["update_interval", "samples", "in1_enable", "in2_enable", "in3_enable"]
    return {n: (hw / n).read_text().strip() for n in names}


ORIGINAL = {"update_interval": "7", "samples": "1", "in1_enable": "1", "in2_enable": "1",
            "in3_enable": "1"}


def _plan_text(settings: str, *, source: str = "ina3221", idle: float = 1,
               result_dir: str = "res") -> str:
    return f"""models = ["lenet"]
[run]
name = "t"
result_dir = "{result_dir}"
[idle]
seconds = {idle}
[cooldown]
seconds = 0.2
[sampler]
source = "{source}"
rate_hz = 1000
heartbeat_seconds = 0.5
{settings}
[benchmark]
backend = "torch"
device = "cpu"
dtype = "float32"
warmup = 2
runs = 20
profile_runs = 5
timeout_seconds = 60
"""


SETTINGS = '[sampler.ina3221]\nupdate_interval = 1\nenabled = ["VDD_IN"]\n'


# -- the plan ----------------------------------------------------------------------------------


def test_plan_keys_parsed(tmp_path: Path) -> None:
    """[sampler.ina3221] becomes frozen settings; without it nothing is asked for."""
    plan = parse_plan(_plan_text(SETTINGS + "samples = 4\n"), base_dir=tmp_path)
    s = plan.sampler.ina3221
    assert s is not None and (s.update_interval, s.samples, s.enabled) == (1, 4, ("VDD_IN",))
    assert plan.to_dict()["sampler"]["ina3221"]["enabled"] == ["VDD_IN"]
    assert parse_plan(_plan_text(""), base_dir=tmp_path).sampler.ina3221 is None


@pytest.mark.parametrize(("settings", "message"), [
    ("[sampler.ina3221]\nsamples = 5\n", r"sampler\.ina3221\.samples: expected the chip's "
     r"averaging count, one of 1, 4, 16, 64, 128, 256, 512, 1024, got 5"),
    ("[sampler.ina3221]\nsamples = true\n", r"samples: .* got true \(a boolean\)"),
    ("[sampler.ina3221]\nupdate_interval = -1\n",
     r"update_interval: expected an integer from 0 to 60000, got -1"),
    ("[sampler.ina3221]\nupdate_interval = 1.5\n", r"got 1\.5 \(a float\)"),
    ("[sampler.ina3221]\nenabled = []\n", r"enabled: expected a non-empty array"),
    ('[sampler.ina3221]\nenabled = ["A", "A"]\n', r'enabled\[1\]: "A" is listed twice'),
    ("[sampler.ina3221]\nupdate_intervall = 1\n", r'did you mean "update_interval"'),
    ("[sampler.ina3221]\n", r"an empty table asks for nothing"),
    ("ina3221 = 3\n", r"sampler\.ina3221: expected a table"),
])
def test_bad_values_named(tmp_path: Path, settings: str, message: str) -> None:
    """Each bad value is refused before anything runs, naming the key, the value and the rule."""
    with pytest.raises(PlanError, match=message):
        parse_plan(_plan_text(settings), base_dir=tmp_path)


def test_only_for_the_hwmon_driver(tmp_path: Path) -> None:
    """The simulated, NVML, JetPack 4 sources have no settings to write: the plan says so."""
    with pytest.raises(PlanError, match=r'only used with source = "ina3221" or "auto" '
                       r'\(source is "ina3221x"\)'):
        parse_plan(_plan_text(SETTINGS, source="ina3221x"), base_dir=tmp_path)


# -- the driver's write rule -------------------------------------------------------------------


def _emulate(writes: list[tuple[str, str]], ct: int, channels: int, samples: int
             ) -> tuple[int, int]:
    """The conversion time and averaging a chip ends with after ``writes`` (the driver's rule)."""
    for name, value in writes:
        if name == "samples":
            samples = int(value)
        elif name == "update_interval":
            ct = cs.driver_conversion_us(int(value), channels, samples)
    return ct, samples


def test_driver_rule_known_answers() -> None:
    """update_interval / (2 x channels x samples) to the closest conversion time, as the driver
    does: the Jetson default 7 ms on 3 channels is 1100 us; 1 ms on one channel 588 us; 0 the
    shortest; the averaging count in force divides."""
    assert cs.driver_conversion_us(7, 3, 1) == 1100
    assert cs.driver_conversion_us(1, 1, 1) == 588
    assert cs.driver_conversion_us(0, 1, 1) == 140
    assert cs.driver_conversion_us(26, 3, 4) == 1100
    assert cs.driver_conversion_us(7, 3, 4) == 332  # re-writing the JetPack 6 read-back: wrong


@pytest.mark.parametrize(("ct", "channels", "samples", "interval"), [
    (1100, 3, 1, 7), (1100, 3, 4, 7), (140, 1, 1, 0), (204, 1, 1, 0), (8244, 2, 64, 4221),
    (332, 2, 16, 1),
])
def test_restore_writes_give_the_old_conversion_time(ct: int, channels: int, samples: int,
                                                     interval: int) -> None:
    """Whatever the averaging count, the restore writes leave the original conversion time and
    averaging in force (on JetPack 6 update_interval reads back without the averaging count, so
    writing it back as it read would not)."""
    writes = cs._interval_writes(ct, channels, samples, interval)
    assert _emulate(writes, 9999, channels, 1) == (ct, samples)


# -- apply and restore -------------------------------------------------------------------------


def test_apply_then_restore_files(tmp_path: Path) -> None:
    """The writes land in the files in the driver's order, discovery then describes one channel
    with 588 us windows, and restore puts every file back; the pending copy exists meanwhile."""
    root = _tree(tmp_path / "root")
    res = tmp_path / "res"
    res.mkdir()
    record = cs.apply(root, cs.Request(update_interval=1, enabled=("VDD_IN",)), res)
    assert _files(root) == {**ORIGINAL, "update_interval": "1", "in2_enable": "0",
                            "in3_enable": "0"}
    assert (root / cs.PENDING).is_file() and (res / cs.RECORD_NAME).is_file()
    saved = json.loads((res / cs.RECORD_NAME).read_text())
    assert saved["chips"][0]["original"]["update_interval"] == 7
    assert saved["chips"][0]["writes"] == [["in2_enable", "0"], ["in3_enable", "0"],
                                           ["update_interval", "1"]]
    sensor = discover(root, "ina3221")
    assert sensor.labels == ("VDD_IN",)
    model = sensor.rails[0].current.model  # type: ignore[union-attr]
    assert model.window_us == 588 and model.schedule is not None
    assert model.schedule.period_us == 1176
    result = cs.restore(record, root)
    cs.finish(record, root, result)
    assert result["ok"], result
    assert _files(root) == ORIGINAL
    assert not (root / cs.PENDING).exists()
    assert json.loads((res / cs.RECORD_NAME).read_text())["state"] == "restored"


def test_nothing_written_unless_asked(tmp_path: Path) -> None:
    """Only samples asked for: update_interval and the enables are never written."""
    root = _tree(tmp_path / "root")
    res = tmp_path / "res"
    res.mkdir()
    record = cs.apply(root, cs.Request(samples=4), res)
    assert record["chips"][0]["writes"] == [["samples", "4"]]
    assert _files(root) == {**ORIGINAL, "samples": "4"}
    cs.finish(record, root, cs.restore(record, root))
    assert _files(root) == ORIGINAL


def test_preflight_problems(tmp_path: Path) -> None:
    """Unknown rails, the total rail switched off, a JetPack 4 board: each a clear problem."""
    root = _tree(tmp_path / "root")
    res = str(tmp_path / "res")

    def problems(settings: str, board_root: Path = root) -> list[str]:
        plan = parse_plan(_plan_text(settings, result_dir=res, source="auto"), base_dir=tmp_path)
        sensor = discover(board_root, "auto")
        return settings_problems(plan, board_root, sensor)

    assert problems(SETTINGS) == []
    assert "'VDD_GPU' not on an INA3221 chip" in " ".join(
        problems('[sampler.ina3221]\nenabled = ["VDD_GPU"]\n'))
    off = problems('[sampler.ina3221]\nenabled = ["VDD_SOC"]\n')
    assert any("'VDD_IN' (the total rail) would stop converting" in p for p in off), off
    jp4 = _tree(tmp_path / "jp4", "nano_jp4")
    assert "only the hwmon ina3221 driver" in " ".join(problems(SETTINGS, jp4))


def test_refused_as_unprivileged_user() -> None:
    """As root, a forked child dropped to nobody gets preflight's refusal, and apply refuses
    too, writing nothing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    top = Path(tempfile.mkdtemp(prefix="jetpower-settings-"))  # /tmp: reachable by nobody
    try:
        root = _tree(top / "root")
        for d in [top, *top.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
        plan = parse_plan(_plan_text(SETTINGS, result_dir=str(top / "res")), base_dir=top)
        sensor = discover(root, "ina3221")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(r)
            out: list[str] = []
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                out += settings_problems(plan, root, sensor)
                try:
                    cs.apply(root, cs.Request(update_interval=1), top)
                    out.append("apply: no error")
                except SensorError as e:
                    out.append(f"apply: SensorError: {e}")
            except BaseException as e:  # report anything to the parent
                out.append(f"{type(e).__name__}: {e}")
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        got = json.loads(b"".join(chunks).decode())
        assert any("needs root (this process runs as uid 65534)" in p and "sudo" in p
                   for p in got), got
        assert got[-1].startswith("apply: SensorError: writing the INA3221's settings needs "
                                  "root"), got
        assert _files(root) == ORIGINAL
        assert not (root / cs.PENDING).exists()
    finally:
        shutil.rmtree(top)


# -- through real runs -------------------------------------------------------------------------


def _run_files(tmp_path: Path, settings: str = SETTINGS, idle: float = 1) -> tuple[Path, Path]:
    root = _tree(tmp_path / "root")
    plan = tmp_path / "plan.toml"
    plan.write_text(_plan_text(settings, idle=idle))
    return root, plan


@pytest.mark.torch
def test_run_applies_and_restores(tmp_path: Path) -> None:
    """A real campaign on a fake INA3221 tree: the sensor it describes (reading model) has the
    settings in force, the manifest says what was set and restored, and the files are back."""
    root, plan = _run_files(tmp_path)
    res = tmp_path / "res"
    done = jp("run", str(plan), "--root", str(root), "--result-dir", str(res), timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _files(root) == ORIGINAL
    assert not (root / cs.PENDING).exists()
    m = manifest(res)
    s = m["ina3221_settings"]
    assert s["asked"] == {"update_interval": 1, "enabled": ["VDD_IN"]}
    assert s["chips"][0]["in_force"]["conversion_us"] == 588 and s["chips"][0]["confirmed"]
    assert s["restored"]["ok"] and s["restored"]["state"] == "restored"
    assert s["restored"]["chips"][0]["read_back"]["update_interval"] == 7
    (rail,) = m["sensor"]["rails"]
    assert rail["label"] == "VDD_IN"
    current = rail["reading_models"]["current"]
    assert current["window_us"] == 588 and current["schedule"]["period_us_nominal"] == 1176
    assert json.loads((res / cs.RECORD_NAME).read_text())["state"] == "restored"


@pytest.mark.torch  # preflight checks the torch backend of the plan's model
def test_sigterm_restores(tmp_path: Path) -> None:
    """SIGTERM during the idle phase of a real run: the settings were in force during it and are
    restored before the run ends; the manifest records both; the run dies of SIGTERM."""
    root, plan = _run_files(tmp_path, idle=60)
    res = tmp_path / "res"
    live = Live(plan, res, "--root", str(root))
    try:
        live.wait_event(lambda e: e.get("event") == "phase_started" and e.get("phase") == "idle",
                        timeout=60)
        assert _files(root)["in2_enable"] == "0" and (root / cs.PENDING).exists()
        live.proc.send_signal(signal.SIGTERM)
        assert live.finish(timeout=60) == -signal.SIGTERM
    finally:
        live.kill()
    assert_no_orphans(live)
    assert _files(root) == ORIGINAL
    assert not (root / cs.PENDING).exists()
    m = manifest(res)
    assert m["status"] == "interrupted"
    assert m["ina3221_settings"]["restored"]["ok"]
    assert live.named("ina3221_settings_restored")


@pytest.mark.torch
def test_sigkill_restored_at_next_start(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves the settings changed and its pending record; the next
    run on that root (a plan without settings) restores them first and says so."""
    root, plan = _run_files(tmp_path, idle=60)
    res = tmp_path / "res"
    live = Live(plan, res, "--root", str(root))
    try:
        live.wait_event(lambda e: e.get("event") == "phase_started" and e.get("phase") == "idle",
                        timeout=60)
        live.proc.kill()
        live.proc.wait()
    finally:
        live.kill()
    assert_no_orphans(live)
    assert _files(root)["update_interval"] == "1"
    assert json.loads((root / cs.PENDING).read_text())["state"] == "applied"
    plan2 = tmp_path / "plan2.toml"
    plan2.write_text(_plan_text("", idle=60))
    res2 = tmp_path / "res2"
    nxt = Live(plan2, res2, "--root", str(root))
    try:
        ev = nxt.wait_event("ina3221_settings_restored", timeout=60)
        assert ev["leftover_of"] == str(res) and ev["ok"]
        assert _files(root) == ORIGINAL
        nxt.proc.send_signal(signal.SIGTERM)
        nxt.finish(timeout=60)
    finally:
        nxt.kill()
    assert_no_orphans(nxt)
    assert not (root / cs.PENDING).exists()
    assert json.loads((res / cs.RECORD_NAME).read_text())["state"] == "restored"


def test_doctor_restores_leftover(tmp_path: Path) -> None:
    """`jetpower doctor` restores settings whose run is gone (a dead owner) and reports it."""
    root = _tree(tmp_path / "root")
    res = tmp_path / "res"
    res.mkdir()
    record = cs.apply(root, cs.Request(update_interval=2, samples=16), res)
    record["owner"] = {"pid": 999_999_999, "start_ticks": 1}  # a process that does not exist
    (root / cs.PENDING).write_text(json.dumps(record))
    assert _files(root)["samples"] == "16"
    done = jp("doctor", "--root", str(root), "--json", "--backend", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    findings = json.loads(done.stdout)["findings"]
    (f,) = [f for f in findings if f["name"] == "INA3221 settings"]
    assert f["status"] == "warn" and "restored" in f["found"] and str(res) in f["found"]
    assert _files(root) == ORIGINAL
    assert not (root / cs.PENDING).exists()


# -- what the setting allows (probe) -----------------------------------------------------------


def test_overlap_integral_known_answers() -> None:
    """g(d, W) is the integral of (overlap / W)^2 over the window's position: W^2/W - W/3 at
    d = W from both branches; d - W/3 for long layers; ~d^2/W for short ones."""
    from jetpower.acquire import allowance as al

    w = 1100.0
    assert al.overlap_integral(w, w) == pytest.approx(w - w / 3)
    assert al.overlap_integral(w * (1 - 1e-9), w) == pytest.approx(w - w / 3)
    assert al.overlap_integral(5000.0, w) == pytest.approx(5000.0 - w / 3)
    assert al.overlap_integral(11.0, w) == pytest.approx(11.0**2 / w, rel=0.01)
    # numerically: slide a window over a layer of 300 us
    d, step = 300.0, 0.5
    pos = [i * step for i in range(-int(w / step), int(d / step) + 1)]
    num = sum((max(0.0, min(p + w, d) - max(p, 0.0)) / w) ** 2 * step for p in pos)
    assert al.overlap_integral(d, w) == pytest.approx(num, rel=0.01)


def test_shortest_layer_inverts_runs_needed() -> None:
    """The shortest layer reaching 5 % at N runs needs N runs; shorter conversions on fewer
    channels need fewer runs for the same layer."""
    from jetpower.acquire import allowance as al

    d = al.shortest_layer_us(30000, 1100.0, 6600.0)
    assert al.runs_needed(d, 1100.0, 6600.0) == pytest.approx(30000, rel=1e-3)
    assert al.runs_needed(50.0, 140.0, 280.0) < al.runs_needed(50.0, 588.0, 1176.0) < \
        al.runs_needed(50.0, 1100.0, 6600.0)


def test_probe_reports_the_setting_in_force(tmp_path: Path) -> None:
    """`jetpower probe --json` on a fake tree: the per-layer figures follow the files (default
    3 x 1100 us, then one channel at 140 us: far fewer runs), and a read rate below the cycle's
    conversion rate is warned about."""
    root = _tree(tmp_path / "root")

    def per_layer(*extra: str) -> dict:
        done = jp("probe", "--root", str(root), "--seconds", "0.1", "--json", *extra)
        assert done.returncode == 0, done.stderr[-2000:]
        (rail,) = json.loads(done.stdout)["per_layer"]["rails"]
        return rail

    default = per_layer()
    assert (default["window_us"], default["period_us"]) == (1100, 6600)
    assert "warning" not in default
    for name, value in (("in2_enable", "0"), ("in3_enable", "0"), ("update_interval", "0")):
        (root / HW / name).write_text(value + "\n")
    fast = per_layer("--rate-hz", "4000")
    assert (fast["window_us"], fast["period_us"]) == (140, 280)
    assert fast["runs_for_target"]["50"] * 20 < default["runs_for_target"]["50"]
    assert fast["shortest_layer_us_at_runs"] < default["shortest_layer_us_at_runs"]
    assert "raise sampler.rate_hz" in per_layer()["warning"]
    human = jp("probe", "--root", str(root), "--seconds", "0.1", "--rate-hz", "4000")
    assert "for 5% median error a layer of 10 us needs ~" in human.stdout
    assert "50 us needs ~153 runs" in human.stdout  # 140 us windows every 280 us at 4 kHz
    assert "an estimate" in human.stdout


def test_live_owner_blocks_apply_and_leftover_restore(tmp_path: Path) -> None:
    """Settings held by a live process (here: this one) are neither taken over nor restored
    under it; nothing is written."""
    root = _tree(tmp_path / "root")
    res = tmp_path / "res"
    res.mkdir()
    record = cs.apply(root, cs.Request(samples=4), res)  # owner: this process, alive
    with pytest.raises(SensorError, match=r"another jetpower run \(pid \d+.*holds the INA3221"):
        cs.apply(root, cs.Request(samples=16), res)
    with pytest.raises(SensorError, match=r"held by a live jetpower run"):
        cs.restore_leftover(root)
    assert _files(root)["samples"] == "4"
    cs.finish(record, root, cs.restore(record, root))
    assert _files(root) == ORIGINAL and cs.pending(root) is None


def test_failure_inside_the_block_restores(tmp_path: Path) -> None:
    """An error inside the campaign's block (a failing run) still restores the settings, and the
    manifest records both sides; the error goes on up unchanged."""
    import asyncio

    from jetpower.campaign.chipsettings import chip_settings
    from jetpower.campaign.manifest import Manifest

    root = _tree(tmp_path / "root")
    res = tmp_path / "res"
    res.mkdir()
    plan = parse_plan(_plan_text(SETTINGS, result_dir=str(res)), base_dir=tmp_path)
    m = Manifest.new(res)
    seen: dict[str, str] = {}

    async def failing() -> None:
        async with chip_settings(plan, root, res, m):
            seen.update(_files(root))
            raise SensorError("the sensor went away")

    with pytest.raises(SensorError, match="went away"):
        asyncio.run(failing())
    assert seen["update_interval"] == "1" and seen["in3_enable"] == "0"
    assert _files(root) == ORIGINAL and cs.pending(root) is None
    assert manifest(res)["ina3221_settings"]["restored"]["ok"]
