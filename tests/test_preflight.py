"""Preflight: every bad plan and flag of issue 12 is caught before anything runs or is written.

Each case runs the real CLI (``python -m jetpower ...``) and checks: exit status 2, the message
names the key or the file, no traceback, nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

QUICK = """
models = {models}

[run]
name = "t"
result_dir = {result_dir!r}

[idle]
seconds = 1

[cooldown]
seconds = 0

[sampler]
source = "simulated"
{sampler}

[benchmark]
backend = "torch"
device = "cpu"
dtype = "float32"
warmup = 2
runs = 10
profile_runs = 5
"""


def _plan(tmp: Path, *, models: str = '["lenet"]', result_dir: str | None = None,
          sampler: str = "") -> Path:
    path = tmp / "plan.toml"
    path.write_text(QUICK.format(models=models, result_dir=result_dir or str(tmp / "res"),
                                 sampler=sampler))
    return path


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jetpower", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO)


def _refused(p: subprocess.CompletedProcess[str], *names: str) -> None:
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "Traceback" not in out, out
    for n in names:
        assert n in out, (n, out)


def _files(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def test_factory_that_ends_the_check_is_named(tmp_path: Path) -> None:
    """A factory that ends the process it is called in: preflight says which model it was."""
    (tmp_path / "quitter.py").write_text("import os\n\ndef build():\n    os._exit(7)\n")
    plan = _plan(tmp_path, models='["lenet", "quitter:build"]')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "jetpower", "validate", str(plan)], env=env,
                       capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    _refused(p, "exit status 7", "models[1]", "quitter:build")


@pytest.mark.parametrize("model", ["resnet9000", "resnet-18", "nosuchpkg.mod:factory",
                                   "json:dumps"])
def test_unknown_model_refused(tmp_path: Path, model: str) -> None:
    """An unknown model name, a factory that does not import or does not return a module:
    validate and run exit 2 naming models[0] and the name; run writes nothing."""
    plan = _plan(tmp_path, models=json.dumps([model]))
    before = _files(tmp_path)
    _refused(_cli("validate", str(plan)), "models[0]", model)
    _refused(_cli("run", str(plan)), "models[0]", model)
    assert _files(tmp_path) == before


def test_gpu_plan_here_names_every_problem(tmp_path: Path) -> None:
    """plans/gpu.toml on a machine without NVML, CUDA or torchvision: all problems at once."""
    has_nvml = Path("/dev/nvidia0").exists()
    if has_nvml:
        pytest.skip("this machine has an NVIDIA GPU")
    p = _cli("validate", "plans/gpu.toml")
    _refused(p, "plans/gpu.toml", "sampler.source", "models[0]", "models[1]")
    offline = _cli("validate", "--offline", "plans/gpu.toml")
    assert offline.returncode == 0, offline.stderr


def test_unknown_rails_refused(tmp_path: Path) -> None:
    """Rails and a total rail the sensor does not have are named, with what it has."""
    plan = _plan(tmp_path, sampler='rails = ["VDD_IN", "NOPE"]\ntotal_rail = "NOPE"')
    _refused(_cli("validate", str(plan)), "sampler.rails", "'NOPE'", "VDD_IN")


def test_cpu_not_online_refused(tmp_path: Path) -> None:
    """sampler.cpu = 4000 is not an online CPU of this process."""
    plan = _plan(tmp_path, sampler="cpu = 4000")
    _refused(_cli("validate", str(plan)), "sampler.cpu", "4000")


@pytest.mark.parametrize("where", ["/proc/jetpower-x", "/sys/jetpower-x", "/dev/jetpower-x"])
def test_result_dir_on_pseudo_fs_refused(tmp_path: Path, where: str) -> None:
    """run.result_dir under /proc, /sys or /dev: exit 2 naming the key, for validate and run;
    --result-dir under /proc as well (it is not silently ignored)."""
    plan = _plan(tmp_path, result_dir=where)
    _refused(_cli("validate", str(plan)), "run.result_dir", where)
    _refused(_cli("run", str(plan)), "run.result_dir")
    good = _plan(tmp_path)
    _refused(_cli("run", str(good), "--result-dir", where), "run.result_dir", where)
    assert not (tmp_path / "res").exists()


def test_model_rate_must_fit_the_ring(tmp_path: Path) -> None:
    """A model's own rate_hz above the ring's capacity per second is refused like the sampler's."""
    path = tmp_path / "plan.toml"
    path.write_text(QUICK.format(models='[{name = "lenet", rate_hz = 5000}]',
                                 result_dir=str(tmp_path / "r"), sampler="ring_capacity = 2048"))
    _refused(_cli("validate", "--offline", str(path)), "models[0].rate_hz", "ring_capacity")


def test_deep_nesting_is_a_clean_error(tmp_path: Path) -> None:
    """TOML nested 330 to 5000 levels deep: exit 2 naming the file, no RecursionError traceback."""
    for depth in (330, 1000, 5000):
        for key in ("x", "models"):
            path = tmp_path / f"deep-{key}-{depth}.toml"
            path.write_text(f"{key} = " + "[" * depth + "]" * depth + "\n")
            _refused(_cli("validate", "--offline", str(path)), str(path))


def test_fifo_refused_without_reading(tmp_path: Path) -> None:
    """A FIFO is refused at once (it would block forever if opened)."""
    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)
    _refused(_cli("validate", str(fifo), timeout=20), str(fifo), "not a regular file")
    _refused(_cli("run", str(fifo), timeout=20), str(fifo), "not a regular file")


def test_dev_zero_and_huge_files_refused(tmp_path: Path) -> None:
    """/dev/zero is refused unread; a regular file over 1 MB is refused by its size."""
    _refused(_cli("validate", "/dev/zero", timeout=20), "/dev/zero", "not a regular file")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    _refused(_cli("validate", str(big)), str(big), "at most")


@pytest.mark.parametrize("content", ['[1, 2]', '{"format": "jetpower.manifest", "version": 1}',
                                     '{"format": "jetpower.manifest", "version": 1, '
                                     '"status": "running", "models": [], "phases": [], '
                                     '"checksums": {}, "events": []}', "{not json"])
def test_malformed_manifest_on_resume(tmp_path: Path, content: str) -> None:
    """A malformed manifest on --resume: exit 2 with the reason, before the sampler starts."""
    res = tmp_path / "res"
    res.mkdir()
    (res / "jetpower_manifest.json").write_text(content)
    plan = _plan(tmp_path)
    p = _cli("run", str(plan), "--resume")
    _refused(p, "--resume", "jetpower_manifest.json")
    assert "sampler_started" not in p.stdout
    assert sorted(x.name for x in res.iterdir()) == ["jetpower_manifest.json"]


def test_non_empty_result_dir_names_the_ways_out(tmp_path: Path) -> None:
    """A new run into a non-empty directory is refused, naming --result-dir and --resume."""
    res = tmp_path / "res"
    res.mkdir()
    (res / "something").write_text("x")
    _refused(_cli("run", str(_plan(tmp_path))), "--result-dir", "--resume", "not empty")


def test_sample_checks_command_and_out_first(tmp_path: Path) -> None:
    """sample with a missing command, or an unusable --out, starts nothing and writes nothing."""
    out = tmp_path / "D"
    _refused(_cli("sample", "--simulate", "--out", str(out), "--", "/no/such/cmd"),
             "/no/such/cmd")
    assert not out.exists()
    out.mkdir()
    (out / "x").write_text("data")
    _refused(_cli("sample", "--simulate", "--seconds", "1", "--out", str(out)), "not empty")
    _refused(_cli("sample", "--simulate", "--seconds", "1", "--out", "/proc/jp-x"), "/proc")


def test_report_out_under_proc(tmp_path: Path) -> None:
    """report --out /proc/x: a clean error naming the path."""
    res = tmp_path / "res"
    res.mkdir()
    _refused(_cli("report", str(res), "--out", "/proc/jp-x"), "/proc/jp-x")


def test_bad_set_flags(tmp_path: Path) -> None:
    """--set with no '=', an unknown section or key: exit 2 naming it; a good one is applied and
    recorded in the resolved plan."""
    plan = str(_plan(tmp_path))
    _refused(_cli("validate", "--offline", plan, "--set", "benchmark.runs"), "--set")
    _refused(_cli("validate", "--offline", plan, "--set", "nosuch.key=1"), "nosuch.key")
    _refused(_cli("validate", "--offline", plan, "--set", "sampler.nope=1"), "sampler.nope")
    _refused(_cli("validate", "--offline", plan, "--set", "benchmark.runs=-3"), "benchmark.runs")
    ok = _cli("validate", "--offline", plan, "--json", "--set", "benchmark.runs=77",
              "--set", "sampler.rate_hz=500")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["models"][0]["runs"] == 77 and data["sampler"]["rate_hz"] == 500
    assert data["overrides"] == ["benchmark.runs=77", "sampler.rate_hz=500"]


def test_did_you_mean() -> None:
    """A mistyped subcommand gets the closest commands, exit 2."""
    p = _cli("rnu", "plan.toml")
    _refused(p, "'rnu'", "did you mean", "'run'")
    _refused(_cli("valdate"), "'validate'")


def test_valid_plan_passes_preflight(tmp_path: Path) -> None:
    """The quickstart plan passes validate here (the checks do not refuse good plans)."""
    p = _cli("validate", "plans/quickstart.toml")
    assert p.returncode == 0, p.stderr
