"""``python -m jetpower.worker`` as a real subprocess: progress pipe, exit codes, crash safety."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetpower.worker.config import WorkerConfig
from tests.fakes.jp_releases import environ
from tests.worker_helpers import FAKES, check_layout

# the workers here run models: PyTorch
pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]


def _spawn(
    cfg: WorkerConfig,
    tmp_path: Path,
    pythonpath: list[Path] | None = None,
    env: dict[str, str] | None = None,
):
    path = cfg.write(tmp_path / "worker.json")
    r, w = os.pipe()
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [ROOT, *(pythonpath or [])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "jetpower.worker", "--config", str(path), "--progress-fd", str(w)],
        pass_fds=(w,),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(w)
    return proc, os.fdopen(r, encoding="utf-8")


def _run(cfg, tmp_path, pythonpath=None, env=None):
    proc, events_fh = _spawn(cfg, tmp_path, pythonpath, env)
    events = [json.loads(line) for line in events_fh]
    out, err = proc.communicate(timeout=120)
    return proc.returncode, events, out, err


def _cfg(tmp_path, **kw):
    base = {
        "model": "tinycnn",
        "backend": "torch",
        "device": "cpu",
        "dtype": "float32",
        "warmup": 1,
        "runs": 3,
        "profile_runs": 2,
    }
    return WorkerConfig(result_dir=str(tmp_path / "res"), **(base | kw))


def test_success_progress_and_exit_0(tmp_path):
    """A good run exits 0, reports every phase start/end in order and writes nothing on stdout."""
    cfg = _cfg(tmp_path)
    code, events, out, _ = _run(cfg, tmp_path)
    assert code == 0 and out == ""
    assert events[0]["event"] == "worker_ready" and events[-1]["event"] == "worker_finished"
    assert all("t_ns" in e and "event" in e for e in events)
    marks = [(e["event"], e["phase"]) for e in events if e["event"].startswith("phase_")]
    phases = ["load", "compile", "warmup", "timing", "profiling", "write"]
    assert marks == [(k, p) for p in phases for k in ("phase_started", "phase_finished")]
    stamps = [e["t_ns"] for e in events]
    assert stamps == sorted(stamps)
    assert any(e["event"] == "progress" and e["phase"] == "timing" for e in events)
    check_layout(cfg.model_dir, "tinycnn", 3, 2)
    assert not (cfg.model_dir / "jetpower_failure.json").exists()


@pytest.mark.parametrize("release", ["2.3.0a0-igpu", "2.4.0", "2.9.0", "2.12.1", "2.13.0"])
def test_stand_in_tensorrt_subprocess(tmp_path, release):
    """With the stand-in of a release on PYTHONPATH, the tensorrt backend runs end to end, exits
    0 and prints nothing on stdout."""
    cfg = _cfg(tmp_path, backend="tensorrt", device="auto")
    code, _, out, err = _run(cfg, tmp_path, [FAKES], environ(release, dict(os.environ)))
    assert code == 0, err
    assert out == ""
    check_layout(cfg.model_dir, "tinycnn", 3, 2, positive=False)


@pytest.mark.parametrize("version", ["2.2.0", "2.15.0"])
def test_tensorrt_outside_range_exit_2(tmp_path, version):
    """A torch-tensorrt outside the tested range exits 2 naming the version and the range."""
    env = environ("2.4.0", dict(os.environ)) | {"JETPOWER_FAKE_TTRT_VERSION": version}
    fail = _assert_config_failure(
        tmp_path, _cfg(tmp_path, backend="tensorrt", device="auto"), "tested range 2.4-2.14",
        [FAKES], env,
    )
    assert version in fail["message"]


def _assert_config_failure(tmp_path, cfg, needle, pythonpath=None, env=None):
    code, events, _, err = _run(cfg, tmp_path, pythonpath, env)
    assert code == 2
    assert "Traceback" not in err and needle in err
    assert events[-1]["event"] == "worker_failed" and needle in events[-1]["message"]
    fail = json.loads((cfg.model_dir / "jetpower_failure.json").read_text())
    assert fail["format"] == "jetpower.worker-failure" and fail["exit_code"] == 2
    return fail


def test_unknown_model_exit_2(tmp_path):
    """An unknown model exits 2 with a message listing the available models, no traceback."""
    _assert_config_failure(tmp_path, _cfg(tmp_path, model="nosuchnet"), "lenet")


def test_bad_input_shape_exit_2(tmp_path):
    """An input shape the model cannot take exits 2 with a message naming the shape."""
    _assert_config_failure(
        tmp_path, _cfg(tmp_path, model="lenet", input_shape=(1, 3, 8, 8)), "[1, 3, 8, 8]"
    )


def _real_torch_tensorrt() -> bool:
    spec = importlib.util.find_spec("torch_tensorrt")
    return spec is not None and FAKES not in Path(spec.origin or "").parents


@pytest.mark.skipif(_real_torch_tensorrt(), reason="torch-tensorrt is installed here")
def test_missing_tensorrt_names_extra(tmp_path):
    """Without torch-tensorrt installed, the tensorrt backend exits 2 naming the pip extra."""
    _assert_config_failure(
        tmp_path, _cfg(tmp_path, backend="tensorrt", device="auto"), "jetpower[tensorrt]"
    )


def test_malformed_config_exit_2(tmp_path):
    """A malformed input_shape in the JSON exits 2 with a one-line reason, no traceback."""
    path = tmp_path / "bad.json"
    d = _cfg(tmp_path).to_dict() | {"input_shape": "1x3x224x224"}
    path.write_text(json.dumps(d))
    proc = subprocess.run(
        [sys.executable, "-m", "jetpower.worker", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "input_shape" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failure_while_running_exit_3(tmp_path):
    """A model that raises during warm-up exits 3, with a failure file naming the phase."""
    cfg = _cfg(tmp_path, model="jp_models:fails_later", input_shape=(1, 4), warmup=3)
    code, events, _, _ = _run(cfg, tmp_path, [FAKES])
    assert code == 3
    assert events[-1]["event"] == "worker_failed" and events[-1]["phase"] == "warmup"
    fail = json.loads((cfg.model_dir / "jetpower_failure.json").read_text())
    assert fail["exit_code"] == 3 and "deliberate" in fail["message"]
    assert not (cfg.model_dir / "jetpower_failure.json").with_suffix(".tmp").exists()


def test_sigkill_during_profiling_leaves_no_result(tmp_path):
    """SIGKILL in the profiling pass leaves no result file under its final name."""
    cfg = _cfg(tmp_path, runs=2, profile_runs=10_000_000)
    proc, events_fh = _spawn(cfg, tmp_path)
    try:
        for line in events_fh:
            e = json.loads(line)
            if e["event"] == "progress" and e["phase"] == "profiling":
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        events_fh.close()
    assert proc.returncode == -signal.SIGKILL
    finals = [p for p in cfg.model_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert finals == []
