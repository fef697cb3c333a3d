"""``jetpower init``: write a commented plan for the board this runs on.

Sensors are discovered under ``--root`` (default ``/``). On a Jetson (INA3221 found) the plan is the
original experiment (TensorRT, the 20 models); on another machine with power sensors, the same with
the torch backend; where no sensor is found (or discovery is not available), a quickstart plan on
the simulated source, which the file and stderr both say. The plan is checked with
:func:`~jetpower.plan.parse_plan` before it is written, and written atomically; an existing file is
kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from jetpower.errors import JetpowerError, SensorError, UsageError
from jetpower.plan import ORIGINAL_MODELS, SOURCES, parse_plan
from jetpower.plan._schema import toml_string


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("plan.toml"), help="file to write (default: plan.toml)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path("/"), help="filesystem root to discover sensors under"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


@dataclass(frozen=True)
class Found:
    """What discovery told us, reduced to what the plan needs."""

    source: str  # a plan source; "simulated" when nothing was found
    board: str | None
    rails: tuple[str, ...]
    total: tuple[str, ...]
    total_reason: str
    why_simulated: str | None = None


def discover_sensors(root: Path) -> Found:
    """Discover the sensors under ``root``; a simulated :class:`Found` when there are none."""
    try:
        from jetpower.sensors import discover  # optional: absent in a partial install
    except ImportError as e:
        return _simulated(f"sensor discovery is not available ({e})")
    try:
        sensors = discover(root, "auto")
    except SensorError as e:
        return _simulated(str(e))
    source = sensors.source if sensors.source in SOURCES else "auto"
    return Found(
        source=source,
        board=sensors.board,
        rails=tuple(r.label for r in sensors.rails),
        total=tuple(sensors.total.rails),
        total_reason=sensors.total.reason,
    )


def _simulated(why: str) -> Found:
    return Found("simulated", None, (), (), "", why_simulated=why)


def _comment(text: str) -> str:
    """``text`` safe inside a TOML comment (one line, no control characters)."""
    return "".join("?" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)


def _names(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(toml_string(n) for n in names) + "]"


def _total(names: tuple[str, ...]) -> str:
    return toml_string(names[0]) if len(names) == 1 else _names(names)


def _slug(text: str | None, default: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:60].strip("-")
    return slug or default


def render(found: Found, plan_name: str = "plan.toml") -> str:
    """The commented plan text for what was found."""
    jetson = found.source in ("ina3221", "ina3221x")
    simulated = found.source == "simulated"
    name = "quickstart" if simulated else _slug(found.board, "jetson" if jetson else "campaign")
    head = ["# jetpower plan, written by `jetpower init`.", "#"]
    if simulated:
        head += [
            "# No power sensor was found, so this plan uses the SIMULATED source: a fake INA3221",
            "# tree read by the real sampler. Its numbers are not measurements.",
            *textwrap.wrap(
                _comment(found.why_simulated or ""),
                width=98,
                initial_indent="# Discovery said: ",
                subsequent_indent="#   ",
                break_on_hyphens=False,
            ),
        ]
    else:
        head += [
            f"# Board: {_comment(found.board or 'unknown')}; sensor: {found.source}.",
            f"# Rails found: {_comment(', '.join(found.rails))}.",
            f"# Total power (the board's rule): {_comment(' + '.join(found.total))}",
            *textwrap.wrap(
                _comment(found.total_reason),
                width=98,
                initial_indent="#   because: ",
                subsequent_indent="#   ",
                break_on_hyphens=False,
            ),
        ]
    head += [
        "#",
        f"#   python -m jetpower validate {_comment(plan_name)}   # check it, see what it would do",
        f"#   python -m jetpower run {_comment(plan_name)}",
        "#",
        "# Every key is documented in plan.toml of the jetpower repository.",
        "",
    ]
    models = ["lenet", "tinycnn"] if simulated else list(ORIGINAL_MODELS)
    body = [
        "# The models to measure, in order (required; must come before the first [table]).",
        "models = [",
    ]
    body += [f"    {toml_string(m)}," for m in models]
    body += [
        "]",
        "",
        "[run]",
        f"name = {toml_string(name)}",
        "# relative to this file's directory",
        f'result_dir = "results/{name}"',
        "",
        "[idle]",
        f"seconds = {5 if simulated else 120}",
        "",
        "[cooldown]",
        'mode = "fixed"                        # or "thermal" (margin_c, max_seconds, zones)',
        f"seconds = {3 if simulated else 120}",
        "",
        "[sampler]",
        f"source = {toml_string(found.source)}",
        "rate_hz = 1000",
        'cpu = "last"',
    ]
    if not simulated:
        body += [
            f"# rails = {_names(found.rails)}   # default: all of them",
            f"# total_rail = {_total(found.total)}   # default: the board's rule above",
        ]
    body += ["", "[benchmark]"]
    if simulated:
        body += [
            'backend = "torch"',
            'device = "cpu"',
            'dtype = "float32"',
            "warmup = 20",
            "runs = 300",
            "profile_runs = 100",
            "timeout_seconds = 120",
        ]
    else:
        body += [
            f"backend = {toml_string('tensorrt' if jetson else 'torch')}",
            'device = "auto"',
            'dtype = "float16"',
            "input_shape = [1, 3, 224, 224]       # lenet keeps its own 1x1x32x32",
            "warmup = 50",
            "runs = 30000",
            "optimization_level = 3",
            "min_block_size = 5",
            "timeout_seconds = 7200",
        ]
    body += [
        "",
        "[upload]",
        "enabled = false",
        '# repo = "owner/name"                 # DagsHub; token from DAGSHUB_USER_TOKEN',
        "",
    ]
    return "\n".join(head + body)


def write_new(out: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``out`` atomically; an existing ``out`` is an error unless ``force``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as e:
        raise UsageError(f"cannot write in {out.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(0o644)
        if force:
            Path(tmp).replace(out)
        else:
            _link_new(Path(tmp), out)
    except FileExistsError as e:
        raise UsageError(f"{out} already exists; use --force to overwrite it") from e
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()


def _link_new(tmp: Path, out: Path) -> None:
    """Give ``tmp`` the name ``out`` unless ``out`` exists (FileExistsError then)."""
    try:
        os.link(tmp, out)  # atomic and never replaces: no window in which a file could be lost
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem: check, then rename
        if out.exists() or out.is_symlink():
            raise FileExistsError(str(out)) from None
        tmp.replace(out)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if (out.exists() or out.is_symlink()) and not args.force:
        raise UsageError(f"{out} already exists; use --force to overwrite it")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory")
    found = discover_sensors(args.root)
    text = render(found, out.name)
    try:
        parse_plan(text, source=str(out), base_dir=out.parent)
    except JetpowerError as e:
        raise UsageError(f"the plan for this board would not be valid:\n{e}") from e
    write_new(out, text, force=args.force)
    if found.why_simulated:
        print(
            f"jetpower init: {found.why_simulated}\n"
            f'jetpower init: so the plan uses the simulated source (source = "simulated")',
            file=sys.stderr,
        )
    print(f"wrote {out} ({found.source}, {text.count(chr(10))} lines)")
    return 0
