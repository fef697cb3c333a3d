"""Tests that need a Jetson board; elsewhere each skips itself and says why.

On a board (or in the jetpower container on one):  ``python -m pytest -m jetson -v``.
They read the real ``/sys``, ask for SCHED_FIFO in a real child process, and compile and profile
LeNet with the real torch-tensorrt in a real worker process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jetpower.sensors.boards import BOARD_RULES
from tests.conftest import BOARDS
from tests.fakes.jp_releases import environ
from tests.worker_helpers import FAKES, check_layout

ROOT = Path(__file__).resolve().parents[1]
_DRIVERS = (Path("/sys/bus/i2c/drivers/ina3221"), Path("/sys/bus/i2c/drivers/ina3221x"))


def _not_a_jetson() -> str | None:
    """Why this machine is not a Jetson (None: it is one)."""
    compatible = Path("/proc/device-tree/compatible")
    try:
        tegra = b"nvidia,tegra" in compatible.read_bytes()
    except OSError:
        tegra = False
    if tegra or Path("/etc/nv_tegra_release").exists():
        return None
    return "not a Jetson: no /etc/nv_tegra_release and no nvidia,tegra in the device tree"


NOT_JETSON = _not_a_jetson()
on_jetson = pytest.mark.skipif(NOT_JETSON is not None, reason=NOT_JETSON or "")


def _read_int(path: Path) -> int:
    with open(path, "rb") as fh:
        return int(os.pread(fh.fileno(), 64, 0).strip(b"\x00\n "))


def _check_discovery(root: Path, need_board: bool = True) -> None:
    from jetpower.sensors.discover import discover

    s = discover(root, "auto")
    assert s.source in {"ina3221", "ina3221x"}, s.selected_because
    labels = [r.label for r in s.rails]
    assert labels and not any(lb == "NC" or "sum of shunt" in lb.lower() for lb in labels)
    known = [rule for rule in BOARD_RULES if rule.needs <= set(labels)]
    if known:
        assert s.total.rails == known[0].total
    total_uw = 0
    for rail in s.rails:
        assert rail.derivation in {"v_x_i", "power"}
        for ch in rail.channels:
            assert ch.kind == "file" and ch.path.exists()
            v = _read_int(ch.path)
            if ch.quantity == "voltage":
                assert 0 < v < 60_000, (ch.path, v)  # mV
            elif ch.quantity == "current":
                assert 0 <= v < 30_000, (ch.path, v)  # mA
        if rail.label in s.total.rails and rail.voltage and rail.current:
            total_uw += _read_int(rail.voltage.path) * _read_int(rail.current.path)
    if all(r.voltage and r.current for r in s.rails if r.label in s.total.rails):
        assert total_uw > 500_000, "an idle Jetson draws well over 0.5 W"
    if need_board:
        assert s.board, "the device tree names the board"


@pytest.mark.jetson
@on_jetson
def test_ina3221_discovery_on_real_sys():
    """Discovery on the real /sys finds the INA3221 rails (hwmon index found, never assumed),
    skips NC and the shunt-sum channel, picks the board's total rule, and every file reads a
    plausible value."""
    if not any(d.is_dir() for d in _DRIVERS):
        pytest.skip("no ina3221/ina3221x driver under /sys/bus/i2c/drivers on this board")
    _check_discovery(Path("/"))


@pytest.mark.parametrize("board", BOARDS)
def test_discovery_check_on_recorded_boards(fake_sysfs, board):
    """The board check above passes on recorded layouts of real boards (so on a board, a
    failure is the board's, not the check's)."""
    root = fake_sysfs(board)
    _check_discovery(root, need_board=(root / "proc/device-tree/model").exists())


def _fifo_in_child() -> tuple[str, bool]:
    code = (
        "import os\n"
        "from jetpower.sampler.__main__ import _raise_priority\n"
        "print(_raise_priority())\n"
        "print(os.sched_getscheduler(0) == os.SCHED_FIFO)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    said, granted = proc.stdout.splitlines()
    return said, granted == "True"


def test_fifo_child_reports_what_it_got():
    """The child's report agrees with what the kernel allows this process (here or anywhere)."""
    said, granted = _fifo_in_child()
    assert said.startswith("SCHED_FIFO priority") == granted


@pytest.mark.jetson
@on_jetson
def test_sched_fifo_permitted():
    """The sampler's own priority call gets SCHED_FIFO in a child process (in the container:
    --ulimit rtprio=99, or --cap-add SYS_NICE as root)."""
    said, granted = _fifo_in_child()
    assert granted, (
        f"{said}: run with --ulimit rtprio=99 (non-root) or --cap-add SYS_NICE (root), or "
        "raise RLIMIT_RTPRIO for this user"
    )


def _no_tensorrt() -> str | None:
    for mod in ("torch", "torch_tensorrt", "tensorrt"):
        spec = importlib.util.find_spec(mod)
        if spec is None:
            return f"{mod} is not installed"
        if FAKES in Path(spec.origin or "").parents:
            return f"{mod} is the test stand-in, not the real package"
    return None


def _profile_lenet(tmp_path: Path, env: dict[str, str]) -> tuple[dict, str]:
    from jetpower.worker.config import WorkerConfig

    cfg = WorkerConfig(
        result_dir=str(tmp_path / "res"), model="lenet", backend="tensorrt", dtype="float16",
        warmup=10, runs=50, profile_runs=50, optimization_level=3, min_block_size=5,
    )
    path = cfg.write(tmp_path / "worker.json")
    proc = subprocess.run(
        [sys.executable, "-m", "jetpower.worker", "--config", str(path)],
        capture_output=True, text=True, env=env, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == ""
    assert "Exception caught in report_layer_time" not in proc.stderr
    lat = check_layout(cfg.model_dir, "lenet", 50, 50, positive=False)
    info = json.loads((cfg.model_dir / "trt_profiling/trt_engine_info.json").read_text())
    assert all(isinstance(layer, dict) and "LayerType" in layer for layer in info["Layers"])
    meta = json.loads((cfg.model_dir / "jetpower_worker.json").read_text())
    assert meta["profiling"]["missing_reports"] == 0
    assert meta["profiling"]["engines"], "at least one engine was profiled"
    assert len(lat) == meta["profiling"]["layers"]
    return meta, proc.stderr


@pytest.mark.jetson
@on_jetson
@pytest.mark.skipif(_no_tensorrt() is not None, reason=_no_tensorrt() or "")
def test_tensorrt_lenet_compile_and_profile(tmp_path):
    """The real torch-tensorrt compiles LeNet in float16 with DETAILED engine info, and the
    worker profiles every engine, each run complete, in the original layout."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    meta, _ = _profile_lenet(tmp_path, dict(os.environ, PYTHONPATH=str(ROOT)))
    assert meta["device"] == "cuda" and "stand_in" not in meta
    assert meta["torch_tensorrt_generation"]["name"]


@pytest.mark.torch
def test_lenet_check_on_the_stand_in(tmp_path):
    """The board's LeNet check above passes against the stand-in (so on a board, a failure is
    TensorRT's or jetpower's, not the check's)."""
    env = environ("2.4.0", dict(os.environ))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(FAKES)])
    meta, _ = _profile_lenet(tmp_path, env)
    assert meta["stand_in"] is True
