"""The plan file: a campaign described in TOML, parsed once into frozen, checked dataclasses.

:func:`load_plan` / :func:`parse_plan` read the whole file, collect every problem (unknown key,
wrong type, impossible value, unusable result directory), and raise one
:class:`~jetpower.errors.PlanError` listing them all, before anything runs. Each message names the
file, the dotted key (``models[3].dtype``), the value found and what was expected.

A plan lists its models explicitly (``models = ["resnet18", ...]`` or ``[[models]]`` tables); there
is no implicit model set. ``plan.toml`` in the repository is the original experiment's 20 models.
Each model's settings are the ``[benchmark]`` defaults overridden by its own keys, resolved into a
:class:`ModelPlan`. The keys and their defaults are documented in ``plan.toml``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jetpower.errors import PlanError
from jetpower.plan import _estimate as _plan_estimate
from jetpower.plan._models import BENCHMARK_KEYS, ModelPlan, parse_benchmark, parse_models
from jetpower.plan._schema import (
    Ina3221Settings,
    Problems,
    Table,
    absolute_path,
    check_dir_name,
    check_names,
    check_rate,
    check_result_dir,
    parse_ina3221,
    show,
)
from jetpower.sensors import SOURCES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "FORMAT",
    "ORIGINAL_MODELS",
    "SOURCES",
    "VERSION",
    "CooldownSettings",
    "IdleSettings",
    "Ina3221Settings",
    "ModelPlan",
    "Plan",
    "RunSettings",
    "SamplerSettings",
    "UploadSettings",
    "load_plan",
    "parse_plan",
]

FORMAT = "jetpower.plan"
VERSION = 1
#: the largest plan file read (a plan is a few kB; this refuses /dev/zero and runaway files)
MAX_PLAN_BYTES = 1 << 20

#: the models of the original experiment, in its order
ORIGINAL_MODELS = (
    "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "lenet",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "convnext_tiny", "convnext_small",
    "convnext_base",
)  # fmt: skip

COOLDOWN_MODES = ("fixed", "thermal")
_DAY = 86_400.0
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", re.ASCII)

_TOP_KEYS = ("run", "idle", "cooldown", "sampler", "benchmark", "models", "upload")
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "run": ("name", "result_dir"),
    "idle": ("seconds", "remeasure_on_resume"),
    "cooldown": ("mode", "seconds", "margin_c", "max_seconds", "zones"),
    "sampler": (
        "rate_hz",
        "cpu",
        "source",
        "hwmon_path",
        "rails",
        "total_rail",
        "ring_capacity",
        "restart_on_failure",
        "heartbeat_seconds",
        "max_gap_s",
        "on_gap",
        "min_coverage",
        "ina3221",
    ),
    "benchmark": BENCHMARK_KEYS,
    "upload": ("enabled", "repo", "branch", "remote_path", "retries"),
}


@dataclass(frozen=True)
class RunSettings:
    """``[run]``: the campaign's name and where its results go (an absolute path)."""

    name: str
    result_dir: Path


@dataclass(frozen=True)
class IdleSettings:
    """``[idle]``: the idle baseline measured before the first model."""

    seconds: float = 120.0
    #: on resume, measure the idle baseline again instead of keeping the first run's
    remeasure_on_resume: bool = False


@dataclass(frozen=True)
class CooldownSettings:
    """``[cooldown]``: the rest before the first and after every model.

    ``fixed`` waits ``seconds``. ``thermal`` waits at least ``seconds`` and until every thermal
    zone (``zones``, default all) is within ``margin_c`` of its idle temperature, at most
    ``max_seconds``.
    """

    mode: Literal["fixed", "thermal"] = "fixed"
    seconds: float = 120.0
    margin_c: float = 2.0
    max_seconds: float = 600.0
    zones: tuple[str, ...] | None = None

    @property
    def longest_seconds(self) -> float:
        """The longest one cooldown can last."""
        return self.seconds if self.mode == "fixed" else self.max_seconds


@dataclass(frozen=True)
class SamplerSettings:
    """``[sampler]``: the one power sampler of the run."""

    rate_hz: float = 1000
    #: the CPU the sampler is pinned to, or "last" (the last online CPU)
    cpu: int | Literal["last"] = "last"
    source: str = "auto"
    #: the hwmon directory to read, for source "hwmon" (None: discover)
    hwmon_path: Path | None = None
    #: rails to sample (None: all the sensor has)
    rails: tuple[str, ...] | None = None
    #: the rail(s) whose sum is the total power (None: the board's rule)
    total_rail: tuple[str, ...] | None = None
    ring_capacity: int = 65536
    restart_on_failure: bool = False
    heartbeat_seconds: float = 10.0
    #: no new sample for longer than this is a gap (None: max(0.5 s, 50 periods) of the rate)
    max_gap_s: float | None = None
    #: a model whose timing or profiling window holds a gap: measured again once, or failed
    on_gap: Literal["remeasure", "fail"] = "remeasure"
    #: a phase whose coverage (samples x period / its length) is below this is flagged
    min_coverage: float = 0.99

    def gap_limit_s(self, rate_hz: float | None = None) -> float:
        """The gap limit in force at ``rate_hz`` (default: the plan's rate)."""
        if self.max_gap_s is not None:
            return self.max_gap_s
        rate = self.rate_hz if rate_hz is None else rate_hz
        return max(0.5, 50 / rate) if rate > 0 else 0.5
    #: ``[sampler.ina3221]``: chip settings to apply for the run (None: the chip is left alone)
    ina3221: Ina3221Settings | None = None


@dataclass(frozen=True)
class UploadSettings:
    """``[upload]``: pushing the result directory to DagsHub after the run."""

    enabled: bool = False
    repo: str | None = None
    branch: str = "main"
    #: the path inside the repository (default: the run's name)
    remote_path: str = ""
    retries: int = 5


@dataclass(frozen=True)
class Plan:
    """A whole campaign, checked. ``models`` are fully resolved, in the order they run."""

    run: RunSettings
    idle: IdleSettings
    cooldown: CooldownSettings
    sampler: SamplerSettings
    models: tuple[ModelPlan, ...]
    upload: UploadSettings
    #: the plan file's text, as given (for the manifest)
    text: str = field(default="", repr=False, compare=False)
    #: where the plan came from (a path, or "<string>")
    source: str = "<string>"
    #: ``--set key=value`` overrides applied over the file, as given (recorded in the manifest)
    overrides: tuple[str, ...] = ()

    @property
    def result_dir(self) -> Path:
        return self.run.result_dir

    @property
    def simulated(self) -> bool:
        return self.sampler.source == "simulated"

    def to_dict(self) -> dict[str, Any]:
        """The resolved plan as plain JSON-able data (for the manifest and ``validate --json``)."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "source": self.source}
        for f in dataclasses.fields(self):
            if f.name not in ("text", "source", "overrides"):
                out[f.name] = _plain(getattr(self, f.name))
        if self.overrides:
            out["overrides"] = list(self.overrides)
        return out

    def model_seconds(self, model: ModelPlan) -> float:
        """A guess of how long one model's benchmark phase lasts (see ``_plan_estimate``)."""
        return _plan_estimate.benchmark_seconds(
            model.name,
            backend=model.backend,
            device=model.device,
            input_shape=model.input_shape,
            passes=(model.warmup, model.runs, model.profile_runs),
            timeout_seconds=model.timeout_seconds,
        )

    def estimated_seconds(self) -> float:
        """A guess of the whole campaign's length: idle, cooldowns (longest), benchmarks."""
        cooldowns = (len(self.models) + 1) * self.cooldown.longest_seconds
        return self.idle.seconds + cooldowns + sum(self.model_seconds(m) for m in self.models)

    def with_result_dir(self, path: Path | str) -> Plan:
        """This plan writing to ``path`` instead (relative to the current directory); checked."""
        problems = Problems(self.source)
        where = check_result_dir(problems, "run.result_dir", str(path), Path.cwd())
        if problems or where is None:
            raise PlanError(problems.messages)
        return dataclasses.replace(self, run=dataclasses.replace(self.run, result_dir=where))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# -- loading --------------------------------------------------------------------------------------


def _read_plan_file(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_PLAN_BYTES; anything else is refused unread."""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise PlanError(f"{path}: no such plan file") from e
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan file: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise PlanError(f"{path}: is a directory, not a plan file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block, /dev/zero never ends
        raise PlanError(f"{path}: not a regular file (a FIFO, device or socket); "
                        "a plan is a TOML file")
    if st.st_size > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: {st.st_size} bytes; a plan file is at most "
                        f"{MAX_PLAN_BYTES} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
                raise PlanError(f"{path}: not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(MAX_PLAN_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan file: {e.strerror or e}") from e
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: more than {MAX_PLAN_BYTES} bytes; a plan file is smaller")
    return raw


def load_plan(path: Path | str, overrides: tuple[str, ...] = ()) -> Plan:
    """Read and check the plan file at ``path``; raise PlanError listing every problem.

    ``overrides`` are ``key=value`` strings (``sampler.rate_hz=500``), applied over the file.
    """
    path = Path(path)
    raw = _read_plan_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlanError(f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from e
    return parse_plan(text, source=str(path), base_dir=path.parent, overrides=overrides)


def parse_plan(text: str, *, source: str = "<string>", base_dir: Path | None = None,
               overrides: tuple[str, ...] = ()) -> Plan:
    """Check the plan ``text``; relative paths in it are relative to ``base_dir`` (default: cwd)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(_toml_problem(source, e)) from e
    except RecursionError as e:
        raise PlanError(f"{source}: invalid TOML: nested too deeply") from e
    problems = Problems(source)
    _apply_overrides(problems, data, overrides)
    if problems:
        raise PlanError(problems.messages)
    try:
        plan = _build(problems, data, text, source, Path.cwd() if base_dir is None else base_dir)
    except RecursionError as e:  # a value nested deeper than the checks can walk
        raise PlanError(f"{source}: a value is nested too deeply") from e
    if problems:
        raise PlanError(problems.messages)
    return dataclasses.replace(plan, overrides=tuple(overrides)) if overrides else plan


def _apply_overrides(problems: Problems, data: dict[str, Any], overrides: tuple[str, ...]) -> None:
    """``section.key=value`` over the parsed file; the value is TOML (bare words are strings)."""
    for item in overrides:
        key, eq, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not eq or not key or not all(parts):
            problems.add(f"--set {item}", "expected KEY=VALUE, e.g. sampler.rate_hz=500")
            continue
        if parts[0] not in _TOP_KEYS or (len(parts) == 1) != (parts[0] == "models") or (
                len(parts) > 2):
            problems.add(f"--set {key}", "expected section.key (e.g. benchmark.runs) or models")
            continue
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: a string
        if len(parts) == 1:
            data["models"] = value
            continue
        table = data.setdefault(parts[0], {})
        if not isinstance(table, dict):
            problems.add(f"--set {key}", f"[{parts[0]}] in the file is not a table")
            continue
        table[parts[1]] = value


def _toml_problem(source: str, error: Exception) -> str:
    message = str(error)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        line, col = found.groups()
        return f"{source}:{line}:{col}: invalid TOML: {message[: found.start()]}"
    return f"{source}: invalid TOML: {message}"


def _section(problems: Problems, data: Mapping[str, Any], key: str) -> Table:
    raw = data.get(key, {})
    if not isinstance(raw, dict):
        problems.bad(key, raw, f"a table ([{key}])", with_kind=True)
        raw = {}
    return Table(problems, key, raw, _SECTION_KEYS[key])


def _build(
    problems: Problems, data: dict[str, Any], text: str, source: str, base_dir: Path
) -> Plan:
    Table(problems, "", data, _TOP_KEYS).finish(what="section")
    sections = {key: _section(problems, data, key) for key in _SECTION_KEYS}
    run = _parse_run(problems, sections["run"], base_dir)
    sampler = _parse_sampler(problems, sections["sampler"], base_dir)
    defaults = parse_benchmark(sections["benchmark"])
    models = parse_models(problems, data, defaults, sampler.rate_hz)
    plan = Plan(
        run=run,
        idle=_parse_idle(sections["idle"]),
        cooldown=_parse_cooldown(problems, sections["cooldown"]),
        sampler=sampler,
        models=models,
        upload=_parse_upload(problems, sections["upload"], run.name),
        text=text,
        source=source,
    )
    hint = '"{}" is a top-level key: write it above the first [table] of the file'
    hints = {key: hint.format(key) for key in ("models",)}
    for table in sections.values():
        table.finish(hints=hints)
    return plan


# -- sections -------------------------------------------------------------------------------------


def _parse_run(problems: Problems, t: Table, base_dir: Path) -> RunSettings:
    name = t.value("name", None, lambda p, v: check_dir_name(problems, p, v, "a campaign name"))
    if not t.has("name"):
        problems.add("run.name", 'missing: name the campaign, e.g. name = "orin-nano-fp16"')
    name = name or "campaign"
    raw_dir = t.string("result_dir", f"results/{name}", "a directory path")
    where = check_result_dir(problems, t.at("result_dir"), raw_dir, base_dir)
    return RunSettings(name=name, result_dir=where or Path(base_dir, "results", name).absolute())


def _parse_idle(t: Table) -> IdleSettings:
    return IdleSettings(
        seconds=t.number("seconds", 120.0, 0, _DAY, lo_open=True),
        remeasure_on_resume=t.boolean("remeasure_on_resume", False),
    )


def _parse_cooldown(problems: Problems, t: Table) -> CooldownSettings:
    mode = t.choice("mode", "fixed", COOLDOWN_MODES)
    cooldown = CooldownSettings(
        mode="thermal" if mode == "thermal" else "fixed",
        seconds=t.number("seconds", 120.0, 0, _DAY),
        margin_c=t.number("margin_c", 2.0, 0, 50, lo_open=True),
        max_seconds=t.number("max_seconds", 600.0, 0, _DAY, lo_open=True),
        zones=t.names("zones", None, "thermal zone names"),
    )
    if mode == "fixed":
        for key in ("margin_c", "max_seconds", "zones"):
            if t.has(key):
                problems.add(t.at(key), 'only used with mode = "thermal" (mode is "fixed")')
    elif cooldown.max_seconds < cooldown.seconds:
        problems.add(
            t.at("max_seconds"),
            f"{show(cooldown.max_seconds)} is less than cooldown.seconds "
            f"({show(cooldown.seconds)}), the least a thermal cooldown waits",
        )
    return cooldown


def _parse_cpu(problems: Problems, path: str, raw: Any) -> int | Literal["last"] | None:
    if raw == "last" and isinstance(raw, str):
        return "last"
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 4095:
        return raw
    problems.bad(
        path,
        raw,
        'a CPU number from 0 to 4095 or "last"',
        with_kind=isinstance(raw, bool) or not isinstance(raw, (str, int)),
    )
    return None


def _parse_sampler(problems: Problems, t: Table, base_dir: Path) -> SamplerSettings:
    source = t.choice("source", "auto", SOURCES)
    hwmon_path = None
    if t.has("hwmon_path"):
        raw = t.string("hwmon_path", None, "a directory path")
        if source != "hwmon":
            problems.add(
                t.at("hwmon_path"), f'only used with source = "hwmon" (source is "{source}")'
            )
        elif raw is not None:
            hwmon_path = absolute_path(problems, t.at("hwmon_path"), raw, base_dir)

    def total(path: str, raw: Any) -> tuple[str, ...] | None:
        if isinstance(raw, str) and raw.strip() and "\x00" not in raw:
            return (raw,)
        if isinstance(raw, list):
            return check_names(problems, path, raw, "rail names")
        problems.bad(path, raw, "a rail name or an array of rail names to add", with_kind=True)
        return None

    rate: float = t.value("rate_hz", 1000, lambda p, v: check_rate(problems, p, v))
    rails = t.names("rails", None, "rail names")
    total_rail = t.value("total_rail", None, total)
    if rails is not None and total_rail is not None:
        missing = [r for r in total_rail if r not in rails]
        if missing:
            problems.add(
                t.at("total_rail"),
                f"{show(missing)} not in sampler.rails ({show(list(rails))}): "
                "the total must be sampled",
            )
    ring = t.integer("ring_capacity", 65536, 1024, 1 << 26)
    if ring < rate:
        problems.add(
            t.at("ring_capacity"),
            f"{ring} records hold less than one second at sampler.rate_hz = {show(rate)}; "
            f"expected at least {math.ceil(rate)}",
        )
    return SamplerSettings(
        rate_hz=rate,
        cpu=t.value("cpu", "last", lambda p, v: _parse_cpu(problems, p, v)),
        source=source,
        hwmon_path=hwmon_path,
        rails=rails,
        total_rail=total_rail,
        ring_capacity=ring,
        restart_on_failure=t.boolean("restart_on_failure", False),
        heartbeat_seconds=t.number("heartbeat_seconds", 10.0, 0, 3600, lo_open=True),
        max_gap_s=_max_gap(problems, t, rate),
        on_gap=t.choice("on_gap", "remeasure", ("remeasure", "fail")),  # type: ignore[arg-type]
        min_coverage=t.number("min_coverage", 0.99, 0, 1),
        ina3221=t.value("ina3221", None, lambda p, v: parse_ina3221(problems, p, v, source)),
    )


def _max_gap(problems: Problems, t: Table, rate: float) -> float | None:
    """``sampler.max_gap_s``: seconds, more than 2 periods of the rate (a shorter limit would
    call the sampler's own pace a gap), at most an hour."""
    if not t.has("max_gap_s"):
        return None
    got = t.number("max_gap_s", None, 0, 3600, lo_open=True)
    if got is not None and rate > 0 and got <= 2 / rate:
        problems.add(t.at("max_gap_s"), f"{show(got)} s is not more than two periods at "
                     f"sampler.rate_hz = {show(rate)} ({show(2 / rate)} s): every sample would "
                     "end a gap; expected a longer limit")
        return None
    return got


def _parse_upload(problems: Problems, t: Table, run_name: str) -> UploadSettings:
    def repo(path: str, raw: Any) -> str | None:
        if isinstance(raw, str) and _REPO.fullmatch(raw) and ".." not in raw:
            return raw
        problems.bad(
            path, raw, 'a DagsHub repository as "owner/name"', with_kind=not isinstance(raw, str)
        )
        return None

    def remote(path: str, raw: Any) -> str | None:
        parts = raw.split("/") if isinstance(raw, str) else []
        if parts and all(p and p not in (".", "..") and "\x00" not in p for p in parts):
            return str(raw)
        problems.bad(path, raw, "a relative path inside the repository, without '..'")
        return None

    enabled = t.boolean("enabled", False)
    settings = UploadSettings(
        enabled=enabled,
        repo=t.value("repo", None, repo),
        branch=t.string("branch", "main", "a branch name"),
        remote_path=t.value("remote_path", run_name, remote),
        retries=t.integer("retries", 5, 0, 100),
    )
    if enabled and not t.has("repo"):
        problems.add(
            "upload.repo", 'missing: upload is enabled; name the repository as "owner/name"'
        )
    return settings
