"""jetpower.worker.models: building models by name."""

from __future__ import annotations

import pytest

from jetpower.worker import models

torch = pytest.importorskip("torch")


def test_lenet_shape():
    """lenet takes 1x1x32x32 and returns 10 logits, with the original layer sizes."""
    m = models.build("lenet")
    assert models.default_input_shape("lenet") == (1, 1, 32, 32)
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 128), (128, 16)]
    fcs = [f.in_features for f in m.modules() if isinstance(f, torch.nn.Linear)]
    assert fcs == [576, 120, 84]


def test_unknown_model_lists_available():
    """An unknown name raises a config error (exit 2) that lists what can be named."""
    with pytest.raises(models.ModelError, match="lenet") as ei:
        models.build("nosuchnet")
    assert ei.value.exit_code == 2
    assert "package.module:factory" in str(ei.value)


def test_default_shape_for_others():
    """Models other than the small built-ins default to 1x3x224x224."""
    assert models.default_input_shape("resnet18") == (1, 3, 224, 224)


def test_factory_spec(monkeypatch):
    """'module:factory' imports the module and calls the factory; a non-Module is refused."""
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent / "fakes"))
    assert isinstance(models.build("jp_models:fails_later"), torch.nn.Module)
    with pytest.raises(models.ModelError, match="not a Module"):
        models.build("jp_models:not_a_module")
    with pytest.raises(models.ModelError, match="cannot import"):
        models.build("no_such_pkg_xyz:f")


def test_missing_weights_file(tmp_path):
    """A weights path that does not exist is a clear config error, not a download."""
    with pytest.raises(models.ModelError, match="does not exist"):
        models.build("tinycnn", weights=str(tmp_path / "w.pth"))
