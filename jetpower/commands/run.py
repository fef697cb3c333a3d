"""``jetpower run PLAN``: the campaign, unattended; status as JSON lines on stdout.

Before anything is written, the plan and the machine are checked (``campaign/preflight.py``):
every problem at once, exit status 2, nothing created. On a terminal a live panel (phase, model
i/N, runs, ETA, power, sampler health) sits under the console lines; piped, stdout is the JSON
lines only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from jetpower.errors import UsageError
from jetpower.log import is_console, log_stream
from jetpower.plan import Plan, load_plan


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", type=Path, help="the plan file (TOML)")
    p.add_argument("--result-dir", type=Path, default=None,
                   help="write here instead of the plan's result directory")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in its result directory")
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="filesystem root holding sys/ (for testing with a fake tree)")
    p.add_argument("--console", action="store_true",
                   help="human-readable log on stdout even when it is not a terminal")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a plan key (repeatable), e.g. benchmark.runs=100; "
                   "recorded in the manifest")


def _plan(args: argparse.Namespace) -> Plan:
    """The plan as it will run (overrides, --result-dir), preflight passed."""
    from jetpower.campaign.preflight import preflight

    plan = load_plan(args.plan, tuple(args.overrides))
    if args.result_dir is not None:
        plan = plan.with_result_dir(args.result_dir)
    preflight(plan, root=args.root, run=True, resume=args.resume)
    return plan


async def _main(plan: Plan, campaign_args: argparse.Namespace, caught: list[int]) -> int:
    from jetpower.campaign.supervisor import Campaign

    campaign = Campaign(plan, resume=campaign_args.resume, root=campaign_args.root)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(sig: int) -> None:
        if not caught:
            caught.append(sig)
            campaign.interrupted_by = sig
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await campaign.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    plan = _plan(args)
    caught: list[int] = []
    if is_console() and log_stream().isatty():
        from jetpower.campaign.progress import LiveStatus

        with LiveStatus(plan):
            code = asyncio.run(_main(plan, args, caught))
    else:
        code = asyncio.run(_main(plan, args, caught))
    if caught:
        # Interrupted: everything is flushed; let the shell see the signal that stopped us.
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(caught[0], signal.SIG_DFL)
        os.kill(os.getpid(), caught[0])
    return code
