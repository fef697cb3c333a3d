"""``jetpower doctor``: runs here, and reads the Jetson branches from fake board trees."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from jetpower.commands import doctor


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jetpower", "doctor", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_doctor_json_here_is_complete() -> None:
    """On this machine: every section is present, stdout is one JSON object, the smoke test is
    skipped on request."""
    p = _doctor("--json", "--backend", "none")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["format"] == "jetpower.doctor"
    sections = {f["section"] for f in data["findings"]}
    assert {"board", "clocks", "sampler", "sensors", "thermal", "gpu", "software",
            "space"} <= sections
    assert "smoke test" not in sections
    names = {f["name"] for f in data["findings"] if f["section"] == "software"}
    assert {"torch", "torch-tensorrt", "tensorrt", "numpy"} <= names


@pytest.mark.torch
def test_doctor_smoke_test_runs_a_real_worker(tmp_path: Path) -> None:
    """The smoke test compiles and profiles tinycnn with the torch backend in a worker process."""
    f = doctor.smoke("torch")
    assert f.status == "ok", f.found
    assert "layers profiled" in f.found


def test_doctor_orin_nano_tree(fake_sysfs: Callable[[str], Path]) -> None:
    """On a fake Orin Nano (JetPack 6): board and L4T, thermal zones, the INA3221 device with its
    update_interval, samples and enabled channels, and what that allows for per-layer work."""
    root = fake_sysfs("orin_nano_jp6")
    p = _doctor("--root", str(root), "--json", "--backend", "none")
    assert p.returncode == 0, p.stderr
    found = {(f["section"], f["name"]): f for f in json.loads(p.stdout)["findings"]}
    assert "Orin Nano" in found[("board", "model")]["found"]
    assert "R36" in found[("board", "L4T")]["found"]
    assert "VDD_IN" in found[("sensors", "power sensor")]["found"]
    dev = next(f for (s, _n), f in found.items() if s == "sensors" and "update_interval" in
               f["found"])
    assert "update_interval 7 ms" in dev["found"] and "samples 1" in dev["found"]
    assert "VDD_CPU_GPU_CV" in dev["found"] and "least-squares" in dev["advice"]
    assert "cpu-thermal 45.2 C" in found[("thermal", "zones")]["found"]


def test_doctor_jetpack4_and_clocks(fake_sysfs: Callable[[str], Path], tmp_path: Path) -> None:
    """A JetPack 4 Nano (IIO driver) is found; unlocked clocks on a Jetson advise jetson_clocks,
    locked ones say it is on."""
    root = fake_sysfs("nano_jp4")
    for cpu in ("cpu0", "cpu1"):
        d = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        d.mkdir(parents=True)
        for name, value in (("scaling_governor", "schedutil"), ("scaling_min_freq", "102000"),
                            ("scaling_max_freq", "1479000"), ("scaling_cur_freq", "921000")):
            (d / name).write_text(value + "\n")
    findings = doctor.diagnose(root, "none", tmp_path)
    by = {(f.section, f.name): f for f in findings}
    assert by[("sensors", "power sensor")].status == "ok"
    assert "POM_5V_IN" in by[("sensors", "power sensor")].found
    assert by[("clocks", "jetson_clocks")].status == "warn"
    assert "jetson_clocks" in by[("clocks", "cpu governors")].advice
    for cpu in ("cpu0", "cpu1"):
        (root / "sys/devices/system/cpu" / cpu / "cpufreq/scaling_min_freq").write_text("1479000")
    by = {(f.section, f.name): f for f in doctor.diagnose(root, "none", tmp_path)}
    assert by[("clocks", "jetson_clocks")].status == "ok"


def test_doctor_human_output(fake_sysfs: Callable[[str], Path]) -> None:
    """The human view names the sections and the advice, no traceback."""
    p = _doctor("--root", str(fake_sysfs("agx_orin_jp6")), "--backend", "none")
    assert p.returncode == 0, p.stderr
    assert "sensors" in p.stdout and "update_interval" in p.stdout
    assert "Traceback" not in p.stderr
