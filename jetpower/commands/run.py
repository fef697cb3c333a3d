"""``jetpower run PLAN``: the campaign, unattended; status as JSON lines on stdout."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from jetpower.errors import UsageError
from jetpower.log import configure_logging
from jetpower.plan import load_plan


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


async def _main(campaign_args: argparse.Namespace, caught: list[int]) -> int:
    from jetpower.campaign.supervisor import Campaign

    plan = load_plan(campaign_args.plan)
    if campaign_args.result_dir is not None:
        plan = plan.with_result_dir(campaign_args.result_dir)
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
    if not args.plan.is_file():
        raise UsageError(f"plan file {str(args.plan)!r} does not exist")
    if not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    configure_logging(json_lines=None if args.console is False else False)
    caught: list[int] = []
    code = asyncio.run(_main(args, caught))
    if caught:
        # Interrupted: everything is flushed; let the shell see the signal that stopped us.
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(caught[0], signal.SIG_DFL)
        os.kill(os.getpid(), caught[0])
    return code
