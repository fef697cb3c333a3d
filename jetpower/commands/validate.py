"""``jetpower validate PLAN``: check a plan and print what it would do, without running anything.

Exit status 0 when the plan is valid and this machine can run it; 2 (through
:class:`~jetpower.errors.PlanError`) with every problem listed when not: the plan's keys, then the
preflight (``campaign/preflight.py``: sensor and rails, CPU, models and packages in the worker's
interpreter, devices, free space). ``--offline`` checks the plan alone (a plan written on a laptop
for a board). ``--json`` prints the resolved plan instead of the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jetpower.errors import UsageError
from jetpower.plan import ModelPlan, Plan, load_plan
from jetpower.plan._estimate import NOTE, hms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, help="the plan file (TOML)")
    parser.add_argument(
        "--json", action="store_true", help="print the resolved plan as JSON instead of a summary"
    )
    parser.add_argument("--offline", action="store_true",
                        help="check the plan only, not this machine (sensor, models, devices)")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="filesystem root holding sys/ (for testing with a fake tree)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a plan key, e.g. sampler.rate_hz=500")


def run(args: argparse.Namespace) -> int:
    from jetpower.campaign.preflight import preflight

    if not args.offline and not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    plan = load_plan(args.plan, tuple(args.overrides))
    preflight(plan, root=args.root, offline=args.offline)
    if args.json:
        data = plan.to_dict()
        data["estimated_seconds"] = round(plan.estimated_seconds(), 1)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(describe(plan))
    return 0


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _shape(model: ModelPlan) -> str:
    return "x".join(str(d) for d in model.input_shape)


def _sampler_lines(plan: Plan) -> list[str]:
    s = plan.sampler
    rails = ", ".join(s.rails) if s.rails else "all the sensor has"
    if s.total_rail is None:
        total = "the board's rule"
    elif len(s.total_rail) == 1:
        total = s.total_rail[0]
    else:
        total = "sum of " + " + ".join(s.total_rail)
    source = s.source + (f" ({s.hwmon_path})" if s.hwmon_path else "")
    lines = [
        f"sampler   source {source}, {s.rate_hz:g} Hz, pinned to CPU {s.cpu}, "
        f"ring {s.ring_capacity} records",
        f"          rails: {rails}; total: {total}",
        f"          heartbeat {_seconds(s.heartbeat_seconds)}, "
        f"restart on failure: {'yes' if s.restart_on_failure else 'no'}",
    ]
    if plan.simulated:
        lines.append("          SIMULATED: the numbers of this run are not measurements")
    return lines


def _cooldown_text(plan: Plan) -> str:
    c = plan.cooldown
    if c.mode == "fixed":
        return f"fixed {_seconds(c.seconds)}"
    zones = ", ".join(c.zones) if c.zones else "all zones"
    return (
        f"thermal: until within {c.margin_c:g} C of idle ({zones}), "
        f"at least {_seconds(c.seconds)}, at most {_seconds(c.max_seconds)}"
    )


def describe(plan: Plan) -> str:
    """The human summary ``validate`` prints: settings, the sequence of phases, the estimate."""
    u = plan.upload
    upload = (
        f"to {u.repo} (branch {u.branch}) at {u.remote_path}, {u.retries} retries"
        if u.enabled
        else "off"
    )
    lines = [
        f"{plan.source}: valid plan",
        "",
        f"run       {plan.run.name} -> {plan.run.result_dir}",
        *_sampler_lines(plan),
        f"idle      {_seconds(plan.idle.seconds)}"
        + (", measured again on resume" if plan.idle.remeasure_on_resume else ""),
        f"cooldown  {_cooldown_text(plan)}",
        f"upload    {upload}",
        "",
        "models",
    ]
    header = ("dir", "model", "backend", "device", "dtype", "input", "warmup", "runs", "profile")
    rows: list[tuple[str, ...]] = [header]
    rows += [
        (
            m.label,
            m.name if m.name != m.label else "",
            m.backend,
            m.device,
            m.dtype,
            _shape(m),
            str(m.warmup),
            str(m.runs),
            str(m.profile_runs),
        )
        for m in plan.models
    ]
    if not any(r[1] for r in rows[1:]):  # no model has a label of its own
        rows = [r[:1] + r[2:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    extra = sorted(
        {
            f"opt level {m.optimization_level}, min block {m.min_block_size}, "
            f"timeout {hms(m.timeout_seconds)}, sampler {m.rate_hz:g} Hz"
            for m in plan.models
        }
    )
    if len(extra) == 1:
        lines.append(f"  all models: {extra[0]}")
    else:
        lines += [
            f"  {m.label}: opt level {m.optimization_level}, min block {m.min_block_size}, "
            f"timeout {hms(m.timeout_seconds)}, sampler {m.rate_hz:g} Hz"
            for m in plan.models
        ]
    lines += ["", "sequence"]
    cooldown = plan.cooldown.longest_seconds
    bound = "" if plan.cooldown.mode == "fixed" else " (at most)"
    steps: list[tuple[str, str, str]] = [
        ("idle", "", hms(plan.idle.seconds)),
        ("cooldown", "", hms(cooldown) + bound),
    ]
    for m in plan.models:
        steps.append(("benchmark", m.label, "~" + hms(plan.model_seconds(m)) + " (guess)"))
        steps.append(("cooldown", "", hms(cooldown) + bound))
    width = max(len(label) for _, label, _ in steps)
    lines += [
        f"  {i:>3}  {phase:<9}  {label:<{width}}  {took}"
        for i, (phase, label, took) in enumerate(steps, 1)
    ]
    lines += ["", f"estimated duration: {hms(plan.estimated_seconds())} ({NOTE})", ""]
    return "\n".join(lines)
