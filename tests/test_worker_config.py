"""WorkerConfig: the supervisor-to-worker configuration file."""

from __future__ import annotations

import json

import pytest

from jetpower.worker.config import EXIT_CONFIG, WorkerConfig, WorkerConfigError


def test_round_trip(tmp_path):
    """A config written with write() reads back equal, with format/version keys in the file."""
    cfg = WorkerConfig(
        model="lenet", result_dir=str(tmp_path), backend="torch", runs=3, input_shape=(2, 1, 32, 32)
    )
    path = cfg.write(tmp_path / "c.json")
    d = json.loads(path.read_text())
    assert d["format"] == "jetpower.worker-config" and d["version"] == 1
    assert d["input_shape"] == [2, 1, 32, 32]
    assert WorkerConfig.read(path) == cfg
    assert WorkerConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dtype": "int3"}, "'dtype'"),
        ({"backend": "onnx"}, "'backend'"),
        ({"input_shape": [1, 0, 3]}, "'input_shape'"),
        ({"input_shape": "1x3"}, "'input_shape'"),
        ({"runs": 0}, "'runs'"),
        ({"optimization_level": 9}, "'optimization_level'"),
        ({"colour": "red"}, "colour"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_values_name_the_key(change, needle):
    """Each invalid value raises a configuration error (exit 2) whose message names the key."""
    d = WorkerConfig(model="lenet", result_dir="/r").to_dict() | change
    with pytest.raises(WorkerConfigError, match=needle) as ei:
        WorkerConfig.from_dict(d)
    assert ei.value.exit_code == EXIT_CONFIG


def test_model_dir_is_path_safe():
    """A factory spec like 'pkg.mod:fn' becomes a directory name without ':' or '/'."""
    cfg = WorkerConfig(model="pkg.mod:make", result_dir="/r")
    assert cfg.model_dir.name == "pkg.mod_make"
