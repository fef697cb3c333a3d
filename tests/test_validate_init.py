"""``jetpower validate`` and ``jetpower init`` end to end, through the CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jetpower.plan import ORIGINAL_MODELS, load_plan

REPO = Path(__file__).resolve().parent.parent


def jetpower(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jetpower", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_validate_prints_the_sequence_and_an_estimate() -> None:
    """validate on the repository plan exits 0 and prints phases, models and a guessed duration."""
    r = jetpower("validate", "--offline", REPO / "plan.toml")  # a board's plan: the plan alone
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "valid plan" in out
    for name in ORIGINAL_MODELS:
        assert name in out
    assert "1x1x32x32" in out
    lines = out.splitlines()
    idle = next(i for i, line in enumerate(lines) if " idle " in line)
    assert " cooldown " in lines[idle + 1]
    assert " benchmark " in lines[idle + 2] and "alexnet" in lines[idle + 2]
    assert any(line.startswith("estimated duration: ") and "guess" in line for line in lines)


def test_validate_json_is_the_resolved_plan() -> None:
    """validate --json prints the resolved plan as JSON, with an estimate."""
    r = jetpower("validate", "--json", REPO / "plans" / "quickstart.toml")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["format"] == "jetpower.plan"
    assert data["sampler"]["source"] == "simulated"
    assert [m["name"] for m in data["models"]] == ["lenet", "tinycnn"]
    assert 0 < data["estimated_seconds"] < 180


def test_validate_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    """A bad plan exits 2 and lists every problem on stderr, without a traceback."""
    plan = tmp_path / "bad.toml"
    plan.write_text(
        'models = ["lenet", "a/b"]\n[run]\nname = "x"\n[sampler]\nrate_hz = 0\n'
        '[benchmark]\ndtype = "fp16"\nwarmup = -1\n'
    )
    r = jetpower("validate", plan)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    for key in ("models[1]", "sampler.rate_hz", "benchmark.dtype", "benchmark.warmup"):
        assert key in r.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('models = ["lenet"\n', "invalid TOML"),
        (None, "no such plan file"),
    ],
    ids=["invalid toml", "missing file"],
)
def test_validate_unreadable_plan_exits_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    """Invalid TOML and a missing file exit 2 with one clear line, no traceback."""
    plan = tmp_path / "p.toml"
    if content is not None:
        plan.write_text(content)
    r = jetpower("validate", plan)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr


def test_init_without_sensors_writes_a_simulated_plan(tmp_path: Path) -> None:
    """init on a root with no sensor writes a loadable plan on the simulated source and says so."""
    out = tmp_path / "plan.toml"
    r = jetpower("init", "--out", out, "--root", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "simulated" in r.stderr
    assert "SIMULATED" in out.read_text()
    plan = load_plan(out)
    assert plan.simulated
    assert [p.name for p in tmp_path.iterdir()] == ["plan.toml"], "no temporary file left"


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    """An existing file is kept (exit 2) unless --force, which replaces it."""
    out = tmp_path / "plan.toml"
    out.write_text("# mine\n")
    r = jetpower("init", "--out", out, "--root", tmp_path)
    assert r.returncode == 2
    assert "--force" in r.stderr
    assert "Traceback" not in r.stderr
    assert out.read_text() == "# mine\n"
    r = jetpower("init", "--out", out, "--root", tmp_path, "--force")
    assert r.returncode == 0, r.stderr
    assert load_plan(out).models


def test_init_into_a_missing_directory_exits_2(tmp_path: Path) -> None:
    """An --out whose directory does not exist is a usage error, and nothing is created."""
    r = jetpower("init", "--out", tmp_path / "no" / "plan.toml", "--root", tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "no").exists()


def _fake_orin_nano(root: Path) -> None:
    """A minimal JetPack 6 Orin Nano: one INA3221 on hwmon with VDD_IN and two sub-rails."""
    hw = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    hw.mkdir(parents=True)
    for n, (label, mv, ma) in enumerate(
        [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 400)], 1
    ):
        (hw / f"in{n}_label").write_text(label + "\n")
        (hw / f"in{n}_input").write_text(f"{mv}\n")
        (hw / f"curr{n}_input").write_text(f"{ma}\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")


def test_init_on_a_jetson_writes_the_original_experiment(tmp_path: Path) -> None:
    """init on an INA3221 board writes the TensorRT plan with the 20 models and the rails found."""
    pytest.importorskip("jetpower.sensors")
    root = tmp_path / "root"
    _fake_orin_nano(root)
    out = tmp_path / "plan.toml"
    r = jetpower("init", "--out", out, "--root", root)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "VDD_IN" in text
    plan = load_plan(out)
    assert plan.sampler.source == "ina3221"
    assert tuple(m.name for m in plan.models) == ORIGINAL_MODELS
    assert {m.backend for m in plan.models} == {"tensorrt"}
    assert plan.run.name.startswith("nvidia-jetson-orin-nano")
