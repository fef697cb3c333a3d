"""Property-based tests: whatever TOML (or text) the loader is given, it returns a Plan or raises
PlanError, and never creates anything on disk."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jetpower.errors import PlanError
from jetpower.plan import _SECTION_KEYS, Plan, parse_plan
from jetpower.plan._models import BENCHMARK_KEYS

# The keys the plan knows, so generated documents reach the value checks, not only "unknown key".
SECTIONS = ("run", "idle", "cooldown", "sampler", "benchmark", "upload")
KEYS = (
    "name", "result_dir", "seconds", "remeasure_on_resume", "mode", "margin_c", "max_seconds",
    "zones", "rate_hz", "cpu", "source", "hwmon_path", "rails", "total_rail", "ring_capacity",
    "restart_on_failure", "heartbeat_seconds", "max_gap_s", "on_gap", "min_coverage", "backend",
    "device", "dtype", "input_shape",
    "warmup", "runs", "profile_runs", "optimization_level", "min_block_size", "timeout_seconds",
    "label", "enabled", "repo", "branch", "remote_path", "retries",
)  # fmt: skip
WORDS = (
    "last", "auto", "cpu", "cuda", "torch", "tensorrt", "float16", "bfloat16", "thermal", "fixed",
    "simulated", "hwmon", "lenet", "resnet18", "a:b", "pkg.mod:fn", "../x", "a/b", "~", "~nobody_x",
    "owner/name", "VDD_IN", "", " ", "jetpower_x", ".hidden", "-x", "x" * 300,
    "remeasure", "fail",
)  # fmt: skip


# -- a TOML writer of our own (the test must not trust the code under test to write TOML) --------


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def dumps(doc: dict[str, Any]) -> str:
    """TOML text of ``doc``: plain keys first, then each table value as a [section]."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{_key(key)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(SECTIONS), st.text(max_size=12))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 5, 1000, 65536, 100_001, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(min_value=dt.datetime(1, 1, 1, 0, 0, 1)).map(lambda d: d.replace(microsecond=0)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=12,
)
# values that are right for some key, so that mutated plans are often valid and reach the end
PLAUSIBLE = (
    True, False, 0, 1, 3, 5, 100, 1000, 65536, 2.5, "last", "auto", "fixed", "thermal", "torch",
    "tensorrt", "cpu", "float32", "bfloat16", "simulated", "hwmon", "owner/name", "main", "x",
    ["VDD_IN"], [1, 3, 32, 32],
)  # fmt: skip
mostly_plausible = st.one_of(st.sampled_from(PLAUSIBLE), st.sampled_from(PLAUSIBLE), values)
models = st.one_of(
    st.lists(
        st.one_of(st.sampled_from(WORDS), st.dictionaries(keys, values, max_size=4)), max_size=4
    ),
    values,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "models": models,
        **{s: st.dictionaries(keys, values, max_size=6) for s in SECTIONS},
        "extra": values,
    },
)


def _check(text: str, base: Path) -> None:
    try:
        plan = parse_plan(text, source="fuzz.toml", base_dir=base)
    except PlanError as e:
        assert e.problems
        assert all(isinstance(p, str) and p.startswith("fuzz.toml") for p in e.problems)
    else:
        assert isinstance(plan, Plan)
        json.dumps(plan.to_dict())
        assert math.isfinite(plan.estimated_seconds())
        assert plan.models and all(m.runs >= 1 and m.input_shape for m in plan.models)
    assert list(base.iterdir()) == [], "the loader must not create anything"


@settings(max_examples=400, deadline=None)
@given(documents)
def test_any_toml_document_gives_a_plan_or_plan_error(doc: dict[str, Any]) -> None:
    """A generated TOML document (known and random keys, any values) loads or raises PlanError."""
    with tempfile.TemporaryDirectory() as tmp:
        _check(dumps(doc), Path(tmp))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_plan_or_plan_error(text: str) -> None:
    """Arbitrary text, mostly invalid TOML, only ever raises PlanError."""
    with tempfile.TemporaryDirectory() as tmp:
        _check(text, Path(tmp))


# The schema's own key lists: the generator hits every key the loader knows.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    **_SECTION_KEYS,
    "models": ("name", "label", *BENCHMARK_KEYS),
}
mutations = st.sampled_from(sorted(SECTION_KEYS)).flatmap(
    lambda section: st.tuples(
        st.just(section),
        st.dictionaries(st.sampled_from(SECTION_KEYS[section]), mostly_plausible, max_size=2),
    )
)


@settings(max_examples=300, deadline=None)
@given(mutations)
def test_mutated_valid_plan_gives_a_plan_or_plan_error(
    mutation: tuple[str, dict[str, Any]],
) -> None:
    """A valid plan with random values written into one section loads or raises PlanError."""
    where, changes = mutation
    with tempfile.TemporaryDirectory() as tmp:
        doc: dict[str, Any] = {"models": ["lenet"], "run": {"name": "f", "result_dir": tmp}}
        if where == "models":
            doc["models"] = [{"name": "lenet", **changes}]
        else:
            doc.setdefault(where, {}).update(changes)
        _check(dumps(doc), Path(tmp))
