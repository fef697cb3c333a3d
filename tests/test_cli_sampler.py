"""``jetpower probe`` and ``jetpower sample`` through the CLI, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def jp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jetpower", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_probe_json_on_fixture(fake_sysfs) -> None:
    """probe --json on a board tree: rails with labels, the total, a read cost per rail."""
    root = fake_sysfs("agx_orin_jp6")
    r = jp("probe", "--root", str(root), "--json", "--seconds", "0.2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["label"] for x in out["rails"]] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0",
                                                  "VDDQ_VDD2_1V8AO"]
    assert out["total"] == {"sum": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]}
    assert all(x["read_us_median"] > 0 for x in out["rails"])
    assert out["jetpack"] == "6.1" and "kernel" in out
    assert set(out["update_interval"].values()) == {7}


def test_probe_simulated_sees_changes() -> None:
    """On the simulated sensor, probe finds values changing about every 7 ms."""
    r = jp("probe", "--simulate", "--json", "--seconds", "0.5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["simulated"] is True
    for rail in out["rails"]:
        assert 3 < rail["change_period_ms"] < 30


def test_sample_seconds_simulated(tmp_path: Path) -> None:
    """sample --seconds writes the original power log, all-rail CSV and a JSON summary."""
    out = tmp_path / "out"
    r = jp("sample", "--simulate", "--seconds", "1", "--rate", "500", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for key in ("samples", "rate_hz", "avg_power_uw", "energy_uj", "overruns", "read_errors",
                "missed_deadlines", "cpu_seconds"):
        assert key in s
    # every 2 ms slot of the window is either sampled or counted as missed: nothing is lost
    # silently (how many are missed depends on this machine's timer, not on jetpower)
    slots = 500 * s["duration_s"]
    assert s["samples"] + s["missed_deadlines"] == pytest.approx(slots, abs=3)
    assert s["rate_hz"] == pytest.approx(s["samples"] / s["duration_s"], rel=0.01)
    assert s["energy_uj"] == pytest.approx(s["avg_power_uw"] * 1.0, rel=0.05)
    assert s["overruns"] == 0 and s["read_errors"] == 0
    lines = (out / "power_log.log").read_text().splitlines()
    assert len(lines) == s["samples"]
    import re

    assert all(re.fullmatch(r"\d{8}-\d\d:\d\d:\d\d\.\d{6},\d+,\d+", ln) for ln in lines)
    csv = (out / "samples.csv").read_text().splitlines()
    assert csv[0] == "# jetpower-samples v2"
    assert csv[1].startswith("t_ns,VDD_IN_mV,VDD_IN_mA,VDD_IN_uW") and csv[1].endswith("total_uW")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulated"] is True and summary["format"] == "jetpower.sample-summary"


def test_sample_command_exit_status_passed_on(tmp_path: Path) -> None:
    """sample -- COMMAND samples while the command runs and exits with its status."""
    r = jp("sample", "--simulate", "--out", str(tmp_path / "o"), "--json", "--",
           sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(7)")
    assert r.returncode == 7, r.stderr
    s = json.loads(r.stdout)
    assert s["exit_status"] == 7
    assert s["samples"] > 300


def test_sample_on_fixture_tree(fake_sysfs, tmp_path: Path) -> None:
    """sample on a JetPack 4 IIO tree uses its input rail."""
    r = jp("sample", "--root", str(fake_sysfs("nano_jp4")), "--seconds", "0.3", "--out",
           str(tmp_path / "o"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["total"] == {"rail": "POM_5V_IN"}
    assert s["avg_power_uw"] == 5056 * 648  # static files: every sample is mV x mA exactly


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "-5"], "--rate -5: expected 0"),
        (["--rate", "1e9"], "--rate 1e+09: expected 0"),
        (["--rails", "VDD_GPU"], "unknown rail name(s) 'VDD_GPU'"),
        (["--seconds", "-1"], "--seconds -1: expected a positive"),
    ],
)
def test_sample_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad flags get one clear message, a non-zero exit and no traceback."""
    base = ["sample", "--simulate", "--out", str(tmp_path / "o")]
    if "--seconds" not in args:
        base += ["--seconds", "0.2"]
    r = jp(*base, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_sample_refuses_non_empty_out(tmp_path: Path) -> None:
    """A non-empty output directory is never written to; its files stay as they were."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "power_log.log").write_text("precious")
    r = jp("sample", "--simulate", "--seconds", "0.2", "--out", str(out))
    assert r.returncode == 2
    assert "not empty" in r.stderr and "Traceback" not in r.stderr
    assert (out / "power_log.log").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["power_log.log"]


def test_sample_unwritable_out(tmp_path: Path) -> None:
    """An output directory that cannot be created is named in the error."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        r = jp("sample", "--simulate", "--seconds", "0.2", "--out", str(ro / "x"))
        assert r.returncode == 2 and "not writable" in r.stderr
    finally:
        ro.chmod(0o700)


def test_no_sensor_suggests_simulate(tmp_path: Path) -> None:
    """No sensor under the root: say where we looked and suggest --simulate."""
    r = jp("sample", "--root", str(tmp_path), "--seconds", "0.2", "--out", str(tmp_path / "o"))
    assert r.returncode == 3
    assert "no power sensor found" in r.stderr and "--simulate" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists(), "nothing is created when nothing can be measured"


def test_missing_root(tmp_path: Path) -> None:
    """A root that does not exist is an error naming it."""
    r = jp("probe", "--root", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
