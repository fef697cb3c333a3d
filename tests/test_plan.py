"""The plan file: parsing, defaults, resolution of models, and every kind of bad plan."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest

from jetpower.errors import PlanError
from jetpower.plan import ORIGINAL_MODELS, Plan, load_plan, parse_plan

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted([REPO / "plan.toml", *(REPO / "plans").glob("*.toml")])


def minimal(result_dir: Path, extra: str = "", models: str = 'models = ["resnet18"]') -> str:
    """A valid plan with ``extra`` appended (tables) and ``models`` on top."""
    return f'{models}\n[run]\nname = "t"\nresult_dir = "{result_dir}"\n{extra}\n'


def problems_of(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="p.toml", base_dir=base_dir)
    return info.value.problems


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_plans_parse(path: Path) -> None:
    """Every plan shipped in the repository loads without a problem."""
    plan = load_plan(path)
    assert plan.models
    assert plan.text == path.read_text(encoding="utf-8")
    json.dumps(plan.to_dict())


def test_repository_plan_is_the_original_experiment() -> None:
    """plan.toml is the original experiment: 20 models, TensorRT, fp16, 30000 runs, 120 s phases."""
    plan = load_plan(REPO / "plan.toml")
    assert tuple(m.name for m in plan.models) == ORIGINAL_MODELS
    assert plan.idle.seconds == 120
    assert plan.cooldown.mode == "fixed"
    assert plan.cooldown.seconds == 120
    for m in plan.models:
        assert (m.backend, m.dtype, m.warmup, m.runs) == ("tensorrt", "float16", 50, 30000)
        assert (m.optimization_level, m.min_block_size) == (3, 5)
        expected = (1, 1, 32, 32) if m.name == "lenet" else (1, 3, 224, 224)
        assert m.input_shape == expected


def test_quickstart_is_short_and_simulated() -> None:
    """The quickstart plan runs on the simulated source, torch on CPU, well under 3 minutes."""
    plan = load_plan(REPO / "plans" / "quickstart.toml")
    assert plan.simulated
    assert [m.name for m in plan.models] == ["lenet", "tinycnn"]
    assert {(m.backend, m.device, m.dtype) for m in plan.models} == {("torch", "cpu", "float32")}
    assert plan.result_dir == REPO / "results" / "quickstart"
    assert plan.sampler.rate_hz == 1000
    assert plan.estimated_seconds() < 120


def test_defaults_reproduce_the_original_experiment(tmp_path: Path) -> None:
    """A plan that only names its models gets the original experiment's settings."""
    plan = parse_plan(minimal(tmp_path, models='models = ["resnet18", "lenet"]'))
    resnet, lenet = plan.models
    assert plan.idle.seconds == 120
    assert plan.cooldown.seconds == 120
    assert plan.sampler.rate_hz == 1000
    assert plan.sampler.cpu == "last"
    assert (resnet.dtype, resnet.input_shape, resnet.warmup, resnet.runs) == (
        "float16",
        (1, 3, 224, 224),
        50,
        30000,
    )
    assert resnet.profile_runs == 30000
    assert (resnet.optimization_level, resnet.min_block_size) == (3, 5)
    assert lenet.input_shape == (1, 1, 32, 32)
    assert plan.upload.enabled is False
    assert plan.upload.remote_path == "t"


def test_model_keys_override_benchmark_defaults(tmp_path: Path) -> None:
    """A model's own keys win over [benchmark], which wins over the built-in defaults."""
    text = minimal(
        tmp_path,
        '[benchmark]\ndtype = "float32"\nruns = 100\ninput_shape = [2, 3, 64, 64]\n',
        models='models = ["resnet18", {name = "vgg11", runs = 7, rate_hz = 50}, "lenet"]',
    )
    a, b, lenet = parse_plan(text).models
    assert (a.dtype, a.runs, a.profile_runs, a.input_shape, a.rate_hz) == (
        "float32",
        100,
        100,
        (2, 3, 64, 64),
        1000,
    )
    assert (b.runs, b.profile_runs, b.rate_hz) == (7, 7, 50)
    assert lenet.input_shape == (1, 1, 32, 32), "lenet keeps its own input over [benchmark]'s"


def test_model_input_shape_wins_over_builtin(tmp_path: Path) -> None:
    """An input_shape on the model itself is used even for a built-in model with its own input."""
    text = minimal(tmp_path, models='models = [{name = "lenet", input_shape = [4, 1, 32, 32]}]')
    assert parse_plan(text).models[0].input_shape == (4, 1, 32, 32)


def test_explicit_profile_runs_in_benchmark_applies_to_all(tmp_path: Path) -> None:
    """[benchmark] profile_runs is kept when a model overrides only runs."""
    text = minimal(
        tmp_path,
        "[benchmark]\nprofile_runs = 10\n",
        models='models = [{name = "resnet18", runs = 99}]',
    )
    assert parse_plan(text).models[0].profile_runs == 10


def test_factory_model_gets_its_factory_name_as_directory(tmp_path: Path) -> None:
    """A package.module:factory model's directory is the factory's name unless labelled."""
    text = minimal(
        tmp_path,
        models='models = ["mypkg.nets:small", {name = "other.nets:small", label = "small2"}]',
    )
    a, b = parse_plan(text).models
    assert (a.name, a.label, a.is_factory) == ("mypkg.nets:small", "small", True)
    assert b.label == "small2"


def test_array_of_tables_form(tmp_path: Path) -> None:
    """[[models]] tables are accepted as well as the inline array."""
    text = f'[run]\nname = "t"\nresult_dir = "{tmp_path}"\n[[models]]\nname = "alexnet"\n'
    text += '[[models]]\nname = "resnet18"\ndtype = "float32"\n'
    plan = parse_plan(text)
    assert [(m.name, m.dtype) for m in plan.models] == [
        ("alexnet", "float16"),
        ("resnet18", "float32"),
    ]


def test_result_dir_is_relative_to_the_plan_file(tmp_path: Path) -> None:
    """A relative result_dir is resolved against the plan file's directory, not the cwd."""
    sub = tmp_path / "plans"
    sub.mkdir()
    (sub / "p.toml").write_text('models = ["lenet"]\n[run]\nname = "t"\nresult_dir = "../out"\n')
    plan = load_plan(sub / "p.toml")
    assert plan.result_dir == tmp_path / "out"
    assert not (tmp_path / "out").exists()


def test_default_result_dir_uses_the_run_name(tmp_path: Path) -> None:
    """Without result_dir, results go to results/<name> beside the plan."""
    plan = parse_plan('models = ["lenet"]\n[run]\nname = "abc"\n', base_dir=tmp_path)
    assert plan.result_dir == tmp_path / "results" / "abc"


def test_plan_is_frozen_and_keeps_its_text(tmp_path: Path) -> None:
    """A Plan cannot be changed after parsing and carries its source text."""
    text = minimal(tmp_path)
    plan = parse_plan(text)
    assert plan.text == text
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.models[0].runs = 1  # type: ignore[misc]


def test_to_dict_is_plain_json(tmp_path: Path) -> None:
    """to_dict gives versioned, JSON-able data with every model resolved."""
    plan = parse_plan(minimal(tmp_path, '[sampler]\nrails = ["A", "B"]\ntotal_rail = "A"\n'))
    data = json.loads(json.dumps(plan.to_dict()))
    assert (data["format"], data["version"]) == ("jetpower.plan", 1)
    assert data["run"]["result_dir"] == str(tmp_path)
    assert data["sampler"]["total_rail"] == ["A"]
    assert data["models"][0]["input_shape"] == [1, 3, 224, 224]
    assert "text" not in data


def test_with_result_dir_returns_a_checked_copy(tmp_path: Path) -> None:
    """with_result_dir gives a new plan and leaves the original alone; a bad path is a PlanError."""
    plan = parse_plan(minimal(tmp_path))
    other = plan.with_result_dir(tmp_path / "elsewhere")
    assert other.result_dir == tmp_path / "elsewhere"
    assert plan.result_dir == tmp_path
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PlanError, match=r"run\.result_dir.*not a directory"):
        plan.with_result_dir(blocker / "sub")


def test_estimate_adds_phases_and_is_capped_by_timeouts(tmp_path: Path) -> None:
    """The estimate counts idle, one cooldown more than models, and at most each timeout."""
    text = minimal(
        tmp_path,
        "[idle]\nseconds = 10\n[cooldown]\nseconds = 5\n[benchmark]\ntimeout_seconds = 1\n",
        models='models = ["vgg19", "resnet152"]',
    )
    plan = parse_plan(text)
    assert plan.estimated_seconds() == pytest.approx(10 + 3 * 5 + 2 * 1)
    original = load_plan(REPO / "plan.toml").estimated_seconds()
    assert 3600 < original < 24 * 3600


BAD_CASES = [
    # (id, extra tables, models line, key named, fragment of the message)
    ("unknown key", "[sampler]\nrate_hx = 10\n", None, "sampler.rate_hx", 'did you mean "rate_hz"'),
    ("unknown section", "[sampeler]\nrate_hz = 10\n", None, "sampeler", 'did you mean "sampler"'),
    ("bool is not int", "", 'models = [{name = "lenet", runs = true}]', "models[0].runs", "true"),
    ("negative idle", "[idle]\nseconds = -5\n", None, "idle.seconds", "-5"),
    ("zero idle", "[idle]\nseconds = 0\n", None, "idle.seconds", "greater than 0"),
    ("negative cooldown", "[cooldown]\nseconds = -1\n", None, "cooldown.seconds", "-1"),
    (
        "rate 0",
        "[sampler]\nrate_hz = 0\n",
        None,
        "sampler.rate_hz",
        "a campaign needs a fixed rate",
    ),
    ("absurd rate", "[sampler]\nrate_hz = 1e9\n", None, "sampler.rate_hz", "1000000000.0"),
    ("nan rate", "[sampler]\nrate_hz = nan\n", None, "sampler.rate_hz", "nan"),
    ("model rate 0", "[benchmark]\nrate_hz = 0\n", None, "benchmark.rate_hz", "got 0"),
    ("path as model", "", 'models = ["../evil"]', "models[0]", "looks like a path"),
    ("slash in model", "", 'models = [{name = "a/b"}]', "models[0].name", '"a/b"'),
    ("empty model name", "", 'models = [""]', "models[0]", '""'),
    ("empty model list", "", "models = []", "models", "at least one model"),
    ("no models", "", "", "models", "missing"),
    ("models as table", '[models]\nname = "x"\n', "", "models", "a table"),
    ("duplicate model", "", 'models = ["lenet", "alexnet", "lenet"]', "models[2]", "duplicate"),
    (
        "duplicate label",
        "",
        'models = ["vgg11", {name = "vgg13", label = "vgg11"}]',
        "models[1].label",
        "duplicate",
    ),
    ("reserved label", "", 'models = ["jetpower_manifest.json"]', "models[0]", "its own files"),
    ("bad dtype", '[benchmark]\ndtype = "fp16"\n', None, "benchmark.dtype", '"fp16"'),
    ("zero dim", "", 'models = [{name = "x", input_shape = [1, 0]}]', "input_shape[1]", "0"),
    ("shape type", '[benchmark]\ninput_shape = "1x3"\n', None, "benchmark.input_shape", "1x3"),
    ("opt level", "[benchmark]\noptimization_level = 7\n", None, "optimization_level", "0 to 5"),
    ("trt on cpu", '[benchmark]\ndevice = "cpu"\n', None, "benchmark", 'device "cpu"'),
    ("fixed margin", "[cooldown]\nmargin_c = 3\n", None, "cooldown.margin_c", '"thermal"'),
    (
        "thermal max",
        '[cooldown]\nmode = "thermal"\nseconds = 100\nmax_seconds = 50\n',
        None,
        "cooldown.max_seconds",
        "less than",
    ),
    (
        "total not sampled",
        '[sampler]\nrails = ["A"]\ntotal_rail = ["A", "B"]\n',
        None,
        "sampler.total_rail",
        '"B"',
    ),
    (
        "small ring",
        "[sampler]\nring_capacity = 2000\nrate_hz = 5000\n",
        None,
        "ring_capacity",
        "5000",
    ),
    ("upload no repo", "[upload]\nenabled = true\n", None, "upload.repo", "missing"),
    ("upload bad repo", '[upload]\nrepo = "nope"\n', None, "upload.repo", '"nope"'),
    ("hwmon path", '[sampler]\nhwmon_path = "/x"\n', None, "sampler.hwmon_path", '"hwmon"'),
    ("bad cpu", '[sampler]\ncpu = "first"\n', None, "sampler.cpu", '"first"'),
    ("bad source", '[sampler]\nsource = "ina"\n', None, "sampler.source", '"ina"'),
    ("section not table", "", 'models = ["lenet"]\nsampler = 3', "sampler", "a table"),
    ("bad name", "", 'models = ["lenet"]\n[run]\nname = "a b"', "run.name", '"a b"'),
]


@pytest.mark.parametrize(
    ("extra", "models", "key", "fragment"),
    [c[1:] for c in BAD_CASES],
    ids=[c[0] for c in BAD_CASES],
)
def test_bad_plan_is_named_precisely(
    tmp_path: Path, extra: str, models: str | None, key: str, fragment: str
) -> None:
    """Each bad plan gives a message naming the file, the key and the value; nothing is created."""
    work = tmp_path / "w"
    work.mkdir()
    if models is not None and "[run]" in models:
        text = models + "\n"  # the case brings its own [run]
    else:
        text = minimal(
            work / "deep" / "results",
            extra,
            models if models is not None else 'models = ["resnet18"]',
        )
    problems = problems_of(text, work)
    assert any(p.startswith("p.toml: ") and key in p and fragment in p for p in problems), problems
    assert listing(work) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Several problems in different sections come back together in one PlanError."""
    text = minimal(
        tmp_path,
        '[idle]\nseconds = -1\n[sampler]\nrate_hz = 0\ncolour = "red"\n[benchmark]\ndtype = 16\n',
        models='models = ["lenet", "lenet", "../x"]',
    )
    problems = problems_of(text, tmp_path)
    for key in (
        "idle.seconds",
        "sampler.rate_hz",
        "sampler.colour",
        "benchmark.dtype",
        "models[1]",
    ):
        assert any(key in p for p in problems), (key, problems)
    assert any("models[2]" in p for p in problems)
    assert len(problems) == 6


def test_result_dir_below_a_file_is_rejected(tmp_path: Path) -> None:
    """A result directory that cannot be created because a file is in the way is a PlanError."""
    (tmp_path / "f").write_text("")
    problems = problems_of(minimal(tmp_path / "f" / "results"), tmp_path)
    assert any("run.result_dir" in p and "not a directory" in p for p in problems), problems


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_result_dir_is_rejected(tmp_path: Path) -> None:
    """A result directory whose nearest existing parent is read-only is a PlanError."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        problems = problems_of(minimal(locked / "a" / "b"), tmp_path)
    finally:
        locked.chmod(0o700)
    assert any("run.result_dir" in p and "not writable" in p for p in problems), problems
    assert listing(locked) == []


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    """Invalid TOML is one PlanError with the file, line and column, and no traceback text."""
    problems = problems_of('models = ["lenet"]\n[run]\nname = = "x"\n', tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("p.toml:3:")
    assert "invalid TOML" in problems[0]


def test_missing_file_and_directory_and_bad_encoding(tmp_path: Path) -> None:
    """An absent file, a directory and non-UTF-8 bytes are PlanErrors that say which."""
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "absent.toml")
    with pytest.raises(PlanError, match="is a directory"):
        load_plan(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'models = ["\xff"]\n')
    with pytest.raises(PlanError, match="UTF-8"):
        load_plan(bad)


def test_load_plan_returns_a_plan(tmp_path: Path) -> None:
    """load_plan on a good file returns a Plan whose source is the path given."""
    path = tmp_path / "p.toml"
    path.write_text(minimal(tmp_path))
    plan = load_plan(path)
    assert isinstance(plan, Plan)
    assert plan.source == str(path)
    assert math.isfinite(plan.estimated_seconds())
