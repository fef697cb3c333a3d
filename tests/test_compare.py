"""``jetpower compare``: known answers on synthetic results, and real quickstart-style runs."""

from __future__ import annotations

import csv
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest

from jetpower.report.compare import compare, to_csv, to_markdown
from tests.synthetic import TINY, write_result

PLAN = """
models = ["lenet"]
[run]
name = "c"
result_dir = "res"
[idle]
seconds = 1
[cooldown]
seconds = 0
[sampler]
source = "simulated"
[benchmark]
backend = "torch"
device = "cpu"
dtype = "float32"
warmup = 10
runs = 100
profile_runs = 30
"""


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jetpower", *args], capture_output=True,
                          text=True, timeout=300, check=False, cwd=cwd)


def test_known_difference_is_significant(tmp_path: Path) -> None:
    """Same model at 1.5x the power: energy per inference and net power differ significantly
    (ratio near 1.5 on net power above idle); the same model again (another seed): latency not
    significant; identical settings give no warning."""
    hot = dataclasses.replace(TINY, layer_w=tuple(w * 1.5 for w in TINY.layer_w),
                              gap_w=TINY.gap_w * 1.5)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_result(a, [TINY], seed=1)
    write_result(b, [TINY], seed=2)
    write_result(c, [hot], seed=3)
    same = compare([a, b])
    assert same.warnings == []
    lat = next(r for r in same.rows if r.layer is None and r.metric == "latency")
    assert lat.significant is False
    diff = compare([a, c])
    e = next(r for r in diff.rows if r.layer is None and r.metric == "energy_per_inference")
    assert e.significant is True and e.b > e.a
    layer = [r for r in diff.rows if r.layer is not None and r.metric == "energy"
             and r.significant is not None]
    assert layer and all(r.b > r.a for r in layer if r.significant)


def test_differing_settings_are_named(tmp_path: Path) -> None:
    """A different sampler rate is a warning naming the setting and both values."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_result(a, [TINY], rate_hz=1000.0)
    write_result(b, [TINY], rate_hz=500.0, seed=5)
    c = compare([a, b])
    assert any("sampler_rate_hz differs" in w and "1000" in w and "500" in w for w in c.warnings)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three real campaigns (simulated source, torch CPU): two alike, one at another rate and
    dtype-independent settings changed through --set."""
    base = tmp_path_factory.mktemp("cmp")
    (base / "plan.toml").write_text(PLAN)
    out = []
    for name, extra in (("a", []), ("b", []),
                        ("c", ["--set", "sampler.rate_hz=500", "--set", "benchmark.runs=100"])):
        p = _cli("run", "plan.toml", "--result-dir", name, *extra, cwd=base)
        assert p.returncode == 0, p.stderr[-2000:]
        out.append(base / name)
    return out


@pytest.mark.slow
@pytest.mark.torch
def test_compare_real_runs(real_runs: list[Path], tmp_path: Path) -> None:
    """Two real runs: per model and per layer rows for all four metrics, markdown and a plain CSV
    (csv.DictReader), the terminal table; no warnings between like runs."""
    a, b, _ = real_runs
    md, cs = tmp_path / "cmp.md", tmp_path / "cmp.csv"
    p = _cli("compare", str(a), str(b), "--markdown", str(md), "--csv", str(cs))
    assert p.returncode == 0, p.stderr
    assert "against" in p.stdout and "lenet" in p.stdout and "warning" not in p.stdout
    assert "SIMULATED" in p.stdout
    rows = list(csv.DictReader(cs.open()))
    models = {(r["model"], r["metric"]) for r in rows if not r["layer"]}
    assert {("lenet", m) for m in ("energy_per_inference", "latency", "throughput",
                                   "net_power")} <= models
    assert any(r["layer"] for r in rows) and {r["simulated"] for r in rows} == {"true"}
    assert md.read_text().startswith("# jetpower compare")


@pytest.mark.slow
@pytest.mark.torch
def test_compare_real_runs_with_other_settings(real_runs: list[Path]) -> None:
    """A run at another sampler rate is compared with a warning naming the rate; the library
    output agrees with what the CLI writes."""
    a, _, c = real_runs
    p = _cli("compare", str(a), str(c))
    assert p.returncode == 0, p.stderr
    assert "sampler_rate_hz differs" in p.stdout
    result = compare([a, c])
    assert any("sampler_rate_hz" in w for w in result.warnings)
    assert next(iter(csv.reader(io.StringIO(to_csv(result)))))[0] == "reference"
    assert "sampler_rate_hz" in to_markdown(result)


def test_compare_bad_arguments(tmp_path: Path) -> None:
    """One directory, a missing one, or --csv into /proc: exit 2 with the name, no traceback."""
    for args in (["compare", str(tmp_path)], ["compare", str(tmp_path), str(tmp_path / "no")],
                 ["compare", str(tmp_path), str(tmp_path), "--csv", "/proc/x.csv"]):
        p = _cli(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
