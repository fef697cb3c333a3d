"""The plan's layer_energy keys (the isolation pass of per-layer energy) and their estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetpower import _plan_estimate
from jetpower.errors import PlanError
from jetpower.plan import parse_plan


def _plan(tmp_path: Path, bench: str, models: str = 'models = ["resnet18"]'):
    text = f'{models}\n[run]\nname = "t"\nresult_dir = "{tmp_path}"\n[benchmark]\n{bench}\n'
    return parse_plan(text, source="p.toml", base_dir=tmp_path)


def _problems(tmp_path: Path, bench: str, models: str = 'models = ["resnet18"]') -> str:
    with pytest.raises(PlanError) as info:
        _plan(tmp_path, bench, models)
    return "\n".join(info.value.problems)


def test_defaults_are_off(tmp_path):
    """Without the keys, no isolation pass: layer_energy "off", 5 % precision, 600 s cap."""
    m = _plan(tmp_path, 'backend = "torch"').models[0]
    assert (m.layer_energy, m.layer_energy_precision, m.layer_energy_max_seconds) == (
        "off",
        0.05,
        600.0,
    )


def test_isolated_with_precision_and_cap_per_model(tmp_path):
    """[benchmark] turns it on; a model may override the precision and the cap."""
    plan = _plan(
        tmp_path,
        'backend = "torch"\nlayer_energy = "isolated"\nlayer_energy_precision = 0.1',
        'models = ["resnet18", {name = "mobilenet_v2", layer_energy_max_seconds = 120}]',
    )
    a, b = plan.models
    assert a.layer_energy == b.layer_energy == "isolated"
    assert a.layer_energy_precision == b.layer_energy_precision == 0.1
    assert (a.layer_energy_max_seconds, b.layer_energy_max_seconds) == (600.0, 120)


@pytest.mark.parametrize(
    ("bench", "needle"),
    [
        ('backend = "tensorrt"\nlayer_energy = "isolated"', 'needs backend "torch"'),
        ('backend = "torch"\nlayer_energy = "yes"', "benchmark.layer_energy"),
        ('backend = "torch"\nlayer_energy_precision = 0', "benchmark.layer_energy_precision"),
        ('backend = "torch"\nlayer_energy_precision = 2', "benchmark.layer_energy_precision"),
        ('backend = "torch"\nlayer_energy_max_seconds = -5', "layer_energy_max_seconds"),
        ('backend = "torch"\nlayer_energy_max_secs = 5', 'did you mean "layer_energy_max_seconds"'),
    ],
)
def test_bad_values_name_the_key(tmp_path, bench, needle):
    """A wrong layer_energy setting is a plan error naming the key and what was expected."""
    assert needle in _problems(tmp_path, bench)


def test_estimate_counts_layers_repetitions_and_caps():
    """The pass's guess is layers x repetitions x block time, and never more than the cap."""
    r18 = _plan_estimate.model_isolation_seconds("resnet18", 1e9)
    mb2 = _plan_estimate.model_isolation_seconds("mobilenet_v2", 1e9)
    assert 60 * 3 * 0.4 < r18 < 70 * 3 * 0.45
    assert mb2 / r18 == pytest.approx(143 / 62, rel=0.05)
    assert _plan_estimate.model_isolation_seconds("resnet18", 30.0) == 30.0
    base = {"backend": "torch", "device": "cuda", "input_shape": (1, 3, 224, 224)}
    kw = {"passes": (10, 100, 100), "timeout_seconds": 1e6}
    plain = _plan_estimate.benchmark_seconds("resnet18", **base, **kw)
    more = _plan_estimate.benchmark_seconds("resnet18", **base, **kw, isolation_s=r18)
    assert more == pytest.approx(plain + r18)
