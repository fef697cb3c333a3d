"""Typed access to one TOML table of a plan, collecting every problem instead of stopping.

:class:`Problems` gathers messages of the form ``<source>: <dotted.key>: <what is wrong>``;
:class:`Table` reads one table key by key, checks type and range, records a problem and hands back
the default when a value is wrong (so parsing goes on and every problem is reported at once), and
reports the keys nobody asked for with a "did you mean" suggestion.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jetpower._native import MAX_RATE_HZ, MIN_RATE_HZ  # the one rate range (the C header's)
from jetpower.sensors.chipsettings import Request

D = TypeVar("D")
V = TypeVar("V")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SHOW_MAX = 60
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}", re.ASCII)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quotes, backslash and control characters escaped)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def key_text(key: str) -> str:
    """A key as it would be written in TOML: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),  # before int: a bool is an int to Python, never to TOML
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
    ((_dt.datetime, _dt.date, _dt.time), "a date/time"),
)


def kind(value: object) -> str:
    """The TOML kind of a parsed value, with its article ("a string", "an integer", ...)."""
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return type(value).__name__


def show(value: object) -> str:
    """A short TOML-like rendering of a value for an error message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = toml_string(value)
    elif isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{key_text(str(k))} = ..." for k in list(value)[:4])
        text += ", ...}" if len(value) > 4 else "}"
    elif isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def one_of(choices: Iterable[str]) -> str:
    """``one of "a", "b", "c"`` for a message."""
    return "one of " + ", ".join(toml_string(c) for c in choices)


class Problems:
    """Every problem found in one plan, each naming the source, the key, the value and the rule."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, path: str, message: str) -> None:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        self.messages.append(where + message)

    def bad(self, path: str, value: object, expected: str, *, with_kind: bool = False) -> None:
        got = show(value) + (f" ({kind(value)})" if with_kind else "")
        self.add(path, f"expected {expected}, got {got}")

    def __bool__(self) -> bool:
        return bool(self.messages)


def join(path: str, key: str) -> str:
    """The dotted path of ``key`` inside the table at ``path``."""
    return f"{path}.{key_text(key)}" if path else key_text(key)


class Table:
    """One TOML table of the plan, read with checks; unknown keys are reported by :meth:`finish`."""

    def __init__(
        self, problems: Problems, path: str, data: Mapping[str, Any], known: Sequence[str]
    ) -> None:
        self.problems = problems
        self.path = path
        self.data = data
        self.known = tuple(known)

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def finish(self, *, what: str = "key", hints: Mapping[str, str] | None = None) -> None:
        """Report each key of the table that is not one of ``known`` (``hints``: key -> advice)."""
        for key in self.data:
            if key in self.known:
                continue
            if hints and key in hints:
                self.problems.add(self.at(key), f"unknown {what}; {hints[key]}")
                continue
            close = difflib.get_close_matches(key, self.known, n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known: {', '.join(self.known)}"
            self.problems.add(self.at(key), f"unknown {what}{hint}")

    # -- typed getters: each returns the default (and records a problem) when the value is wrong

    def value(self, key: str, default: D, check: Callable[[str, Any], V | None]) -> V | D:
        """``check(path, raw)`` of the key's value, or ``default`` (absent, or problem recorded)."""
        if key not in self.data:
            return default
        got = check(self.at(key), self.data[key])
        return default if got is None else got

    def integer(self, key: str, default: D, lo: int, hi: int) -> int | D:
        return self.value(key, default, lambda p, v: check_int(self.problems, p, v, lo, hi))

    def number(
        self, key: str, default: D, lo: float, hi: float, *, lo_open: bool = False
    ) -> float | D:
        return self.value(
            key, default, lambda p, v: check_number(self.problems, p, v, lo, hi, lo_open=lo_open)
        )

    def boolean(self, key: str, default: bool) -> bool:
        def check(path: str, raw: Any) -> bool | None:
            if isinstance(raw, bool):
                return raw
            self.problems.bad(path, raw, "true or false", with_kind=True)
            return None

        return self.value(key, default, check)

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        def check(path: str, raw: Any) -> str | None:
            if isinstance(raw, str) and raw in choices:
                return raw
            self.problems.bad(path, raw, one_of(choices), with_kind=not isinstance(raw, str))
            return None

        return self.value(key, default, check)

    def string(self, key: str, default: D, what: str = "a non-empty string") -> str | D:
        def check(path: str, raw: Any) -> str | None:
            if isinstance(raw, str) and raw.strip() and "\x00" not in raw:
                return raw
            self.problems.bad(path, raw, what, with_kind=not isinstance(raw, str))
            return None

        return self.value(key, default, check)

    def names(self, key: str, default: D, what: str) -> tuple[str, ...] | D:
        """A non-empty array of distinct non-empty strings (rail names, thermal zones)."""
        return self.value(key, default, lambda p, v: check_names(self.problems, p, v, what))


def check_int(problems: Problems, path: str, raw: Any, lo: int, hi: int) -> int | None:
    if not isinstance(raw, int) or isinstance(raw, bool):
        problems.bad(path, raw, f"an integer from {lo} to {hi}", with_kind=True)
        return None
    if not lo <= raw <= hi:
        problems.bad(path, raw, f"an integer from {lo} to {hi}")
        return None
    return raw


def check_number(
    problems: Problems, path: str, raw: Any, lo: float, hi: float, *, lo_open: bool = False
) -> float | None:
    if lo_open:
        expected = f"a number greater than {lo:g} and at most {hi:g}"
    else:
        expected = f"a number from {lo:g} to {hi:g}"
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        problems.bad(path, raw, expected, with_kind=True)
        return None
    if not math.isfinite(raw) or raw > hi or raw < lo or (lo_open and raw == lo):
        problems.bad(path, raw, expected)
        return None
    return raw


def check_names(problems: Problems, path: str, raw: Any, what: str) -> tuple[str, ...] | None:
    expected = f"a non-empty array of distinct {what}"
    if not isinstance(raw, list) or not raw:
        problems.bad(path, raw, expected, with_kind=not isinstance(raw, list))
        return None
    ok = True
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip() or "\x00" in item:
            problems.bad(f"{path}[{i}]", item, f"a non-empty string ({what})", with_kind=True)
            ok = False
        elif item in raw[:i]:
            problems.add(f"{path}[{i}]", f"{show(item)} is listed twice")
            ok = False
    return tuple(raw) if ok else None


def check_dir_name(problems: Problems, path: str, raw: Any, what: str) -> str | None:
    """A name that becomes one directory: letters, digits, ``_ . + -``; no ``..``; not hidden."""
    expected = (
        f"{what}: 1 to 100 letters, digits, '_', '.', '+' or '-', not starting with '.' or '-', "
        "no '..'"
    )
    if not isinstance(raw, str) or not _SAFE_NAME.fullmatch(raw) or ".." in raw:
        problems.bad(path, raw, expected, with_kind=not isinstance(raw, str))
        return None
    return raw


def check_rate(problems: Problems, path: str, raw: Any) -> float | None:
    """A sampling rate for a campaign: ``MIN_RATE_HZ`` to ``MAX_RATE_HZ`` (the C loop's range)."""
    expected = f"a rate in Hz from {MIN_RATE_HZ} to {MAX_RATE_HZ}"
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        problems.bad(path, raw, expected, with_kind=True)
        return None
    if raw == 0:
        problems.add(
            path,
            f'expected {expected}, got 0; 0 means "each new value once", which '
            "`jetpower sample` accepts, but a campaign needs a fixed rate",
        )
        return None
    if not math.isfinite(raw) or not MIN_RATE_HZ <= raw <= MAX_RATE_HZ:
        problems.bad(path, raw, expected)
        return None
    return raw


def absolute_path(problems: Problems, path: str, raw: str, base_dir: Path) -> Path | None:
    """``raw`` (``~`` expanded) made absolute against ``base_dir`` and normalised."""
    try:
        given = Path(raw).expanduser()
    except RuntimeError as e:  # "~user" of an unknown user
        problems.add(path, f"{show(raw)} cannot be used: {e}")
        return None
    return Path(os.path.normpath((base_dir / given).absolute()))


def check_result_dir(problems: Problems, path: str, raw: str, base_dir: Path) -> Path | None:
    """The absolute result directory, if it is a writable directory or can be created there.

    Nothing is created: the nearest existing ancestor must be a directory we may write to.
    """
    if "\x00" in raw or not raw.strip():
        problems.bad(path, raw, "a directory path")
        return None
    where = absolute_path(problems, path, raw, base_dir)
    if where is None:
        return None
    why = _unwritable(where)
    if why:
        problems.add(path, f"{show(raw)} ({where}) {why}")
        return None
    return where


def _unwritable(where: Path) -> str | None:
    probe = where
    while True:
        try:
            mode = probe.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                return "cannot be created: no parent directory exists"
            probe = probe.parent
            continue
        except OSError as e:
            return f"cannot be used: {probe}: {e.strerror or e}"
        break
    if not stat.S_ISDIR(mode):
        return f"cannot be used: {probe} exists and is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == where:
            return "is not writable"
        return f"cannot be created: {probe} is not writable"
    return None


# -- [sampler.ina3221]: the chip settings a plan may ask for (root only; restored after the run) --

#: the keys of ``[sampler.ina3221]``
INA3221_KEYS = ("update_interval", "samples", "enabled")
#: the largest update_interval (ms) accepted: 3 channels x 2 x 8244 us x 1024 averages is ~51 s
MAX_UPDATE_INTERVAL_MS = 60_000


#: ``[sampler.ina3221]``: one definition, the sensors' own (plan imports downward)
Ina3221Settings = Request


#: the sources whose chip settings can be written (the JetPack 5/6 hwmon driver)
INA3221_SETTABLE_SOURCES = ("auto", "ina3221")


def parse_ina3221(problems: Problems, path: str, raw: Any, source: str) -> Ina3221Settings | None:
    """Check ``[sampler.ina3221]`` (``raw`` is the table's value): every key named with its rule;
    ``source`` is ``sampler.source`` (only the hwmon ``ina3221`` driver exposes its settings)."""
    from jetpower.sensors._ina3221 import AVERAGING

    if not isinstance(raw, dict):
        problems.bad(path, raw, "a table ([sampler.ina3221]) of update_interval, samples, enabled",
                     with_kind=True)
        return None
    t = Table(problems, path, raw, INA3221_KEYS)
    before = len(problems.messages)

    def samples(p: str, v: Any) -> int | None:
        if isinstance(v, int) and not isinstance(v, bool) and v in AVERAGING:
            return v
        counts = ", ".join(map(str, AVERAGING))
        problems.bad(p, v, f"the chip's averaging count, one of {counts}",
                     with_kind=isinstance(v, bool) or not isinstance(v, int))
        return None

    interval = t.integer("update_interval", None, 0, MAX_UPDATE_INTERVAL_MS)
    got = Ina3221Settings(
        update_interval=interval,
        samples=t.value("samples", None, samples),
        enabled=t.names("enabled", None, "rail names (the channels that keep converting)"),
    )
    t.finish()
    if source not in INA3221_SETTABLE_SOURCES:
        problems.add(path, f"only used with source = \"ina3221\" or \"auto\" (source is "
                     f"{toml_string(source)}): only the JetPack 5/6 hwmon driver ina3221 exposes "
                     "the chip's settings")
    if not raw:
        problems.add(path, "an empty table asks for nothing: give update_interval (ms), samples "
                     "or enabled (rail names), or remove [sampler.ina3221]")
    return got if len(problems.messages) == before else None
