"""``jetpower sample``: sample power for a time, or for exactly as long as a command runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from jetpower._fs import atomic_write_json, check_creatable, prepare_new_dir
from jetpower._process import child
from jetpower.acquire.decode import Decoder
from jetpower.acquire.power_log import PowerLogSink
from jetpower.acquire.process import DEFAULT_CAPACITY
from jetpower.acquire.recorder import WindowSink, sensor_source
from jetpower.acquire.session import ring_directory, session
from jetpower.errors import UsageError
from jetpower.log import get_logger
from jetpower.sensors import SOURCES
from jetpower.timebase import monotonic_ns

MAX_RATE_HZ = 100_000

#: stdout carries the result; the log goes to stderr (console on a terminal, else JSON lines)
LOG_STREAM = "stderr"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--root", type=Path, default=Path("/"), help="filesystem root holding sys/")
    src.add_argument(
        "--simulate",
        action="store_true",
        help="use the simulated sensor (numbers are not measurements)",
    )
    p.add_argument("--source", default="auto", choices=[s for s in SOURCES if s != "simulated"],
                   help="which kind of sensor (default: the first found, in the order listed)")
    p.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        metavar="HZ",
        help="samples per second (0: as fast as the sensor allows; default 1000)",
    )
    p.add_argument("--rails", nargs="+", metavar="RAIL", help="rails to sample (default: all)")
    p.add_argument(
        "--total",
        nargs="+",
        metavar="RAIL",
        help="rail(s) whose sum counts as the total (default: the board's rule)",
    )
    p.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin the sampler to (default: last)"
    )
    p.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, help="ring capacity, records")
    p.add_argument("--seconds", type=float, default=None, help="sample for this long")
    p.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (the command's stdout then goes "
                   "to stderr, so stdout stays parseable)")
    p.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        help="-- COMMAND ...: sample while this command runs; its status is passed on",
    )


def _check(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not math.isfinite(args.rate) or args.rate < 0 or args.rate > MAX_RATE_HZ:
        raise UsageError(
            f"--rate {args.rate:g}: expected 0 (as fast as possible) up to "
            f"{MAX_RATE_HZ} samples per second"
        )
    if (args.seconds is None) == (not cmd):
        raise UsageError("give either --seconds S or -- COMMAND ... (exactly one of them)")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UsageError(f"--seconds {args.seconds:g}: expected a positive number of seconds")
    if args.capacity < 1024:
        raise UsageError(f"--capacity {args.capacity}: expected at least 1024 records")
    if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):
        raise UsageError(f"--cpu {args.cpu}: expected one of {sorted(os.sched_getaffinity(0))}")
    if not args.simulate and not args.root.is_dir():
        raise UsageError(f"--root {str(args.root)!r} does not exist or is not a directory")
    if cmd and shutil.which(cmd[0]) is None:
        raise UsageError(f"command not found: {cmd[0]!r} (nothing was started or written)")
    _check_out(args.out)
    return cmd


def _check_out(out: Path) -> None:
    """--out must be a new or empty directory we may create, on storage: checked, not created."""
    real = Path(os.path.realpath(out))
    for pseudo in ("/proc", "/sys", "/dev"):
        if real == Path(pseudo) or Path(pseudo) in real.parents:
            raise UsageError(f"--out {str(out)!r} is under {pseudo}, which is not storage")
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {str(out)!r} exists and is not a directory")
        if any(out.iterdir()):
            raise UsageError(f"--out {str(out)!r} is not empty; jetpower never overwrites data: "
                             "choose a new directory")
    check_creatable(out, "--out directory")


async def _sample(args: argparse.Namespace, cmd: list[str],
                  caught: list[int]) -> tuple[dict[str, Any], int]:
    log = get_logger()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:  # like `run`: stop, flush, summary, exit with the signal
        if not caught:
            caught.append(sig)
            log.warning("sample_interrupted", signal=signal.Signals(sig).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await _sample_until(args, cmd, stop, caught)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _sample_until(args: argparse.Namespace, cmd: list[str], stop: asyncio.Event,
                        caught: list[int]) -> tuple[dict[str, Any], int]:
    log = get_logger()
    source = "simulated" if args.simulate else args.source
    command: list[asyncio.subprocess.Process] = []
    async with sensor_source(
        root=args.root, source=source, rails=args.rails, total=args.total
    ) as sensor:
        out = prepare_new_dir(args.out)
        decoder = Decoder(sensor)
        window: WindowSink | None = None
        with ring_directory(args.capacity, len(sensor.channels)) as ring_dir:
            async with session(decoder, ring_dir / "sampler.ring", out / "samples.csv",
                               rate_hz=args.rate, cpu=args.cpu, capacity=args.capacity) as s:
                info = s.handle.reader.info
                log.info(
                    "sampler_started",
                    rails=list(sensor.labels),
                    rate_hz=args.rate,
                    cpu=info.cpu,
                    sched=info.sched_policy,
                    simulated=sensor.simulated,
                    pid=s.handle.proc.pid,
                )
                start = monotonic_ns()
                window = WindowSink(start, rule=decoder.integration_rule, before=s.recorder.last)
                plog = PowerLogSink(out / "power_log.log", s.anchor, start)
                s.recorder.sinks += [window, plog]
                try:
                    work = asyncio.ensure_future(
                        _run_command(cmd, command, quiet_stdout=args.json) if cmd
                        else asyncio.sleep(args.seconds))
                    stopped = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    stopped.cancel()
                    if not work.done():  # a signal: the command is stopped and reaped first
                        work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
                finally:
                    end = monotonic_ns()
                    window.end_ns = plog.end_ns = end
                    await s.recorder.drain_now()
                    report = await s.handle.stop()
                    counters = s.handle.reader.counters()
            await plog.close()
    status = 0
    if command and command[0].returncode is not None:
        status = command[0].returncode
        if status < 0:  # killed by a signal: the shell's convention
            status = 128 - status
    integ = window.integrator
    span = integ.span_s
    summary: dict[str, Any] = {
        "status": "interrupted" if caught else "complete",
        "interrupted_by": caught[0] if caught else None,
        "samples": integ.count,
        "rate_hz": (integ.count - 1) / span if span > 0 and integ.count > 1 else 0.0,
        "avg_power_uw": integ.mean_uw,
        "energy_uj": integ.energy_uj,
        "duration_s": (end - start) / 1e9,
        "overruns": counters.overruns,
        "read_errors": sum(counters.read_errors),
        "missed_deadlines": counters.missed_deadlines,
        "cpu_seconds": report.get("cpu_seconds"),
        "invalid_samples": integ.invalid,
        "read_errors_by_channel": {n: e for n, e in zip(info.names, counters.read_errors) if e},
        "priority": report.get("priority"),
        "cpu": info.cpu,
        "total": sensor.total.to_dict(),
        "power_log_columns": decoder.log_columns_note,
        "simulated": sensor.simulated,
        "integration": f"{decoder.integration_rule} over CLOCK_MONOTONIC, samples with "
                       "start <= t <= end",
    }
    if cmd:
        summary["command"] = cmd
        summary["exit_status"] = status
    atomic_write_json(
        out / "summary.json",
        {"format": "jetpower.sample-summary", "version": 1, "sensor": sensor.to_dict(), **summary},
    )
    return summary, status


async def _run_command(cmd: list[str], started: list[asyncio.subprocess.Process], *,
                       quiet_stdout: bool) -> int:
    # Owned like every child (stopped and reaped on every path, SIGTERMed by the kernel should we
    # be SIGKILLed), but it is the user's: it keeps the terminal (stdin, stderr), our process
    # group and the user's environment whole; with --json its stdout goes to our stderr, so that
    # our stdout is the one JSON object and nothing else.
    async with child(cmd, name="command", stdout=sys.stderr.fileno() if quiet_stdout else None,
                     stdin=None, stderr_pipe=False, new_session=False, secrets=True,
                     die_with_us=True) as proc:
        started.append(proc)
        return await proc.wait()


def _human(s: dict[str, Any]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "SIMULATED sensor: these numbers are not measurements" if s["simulated"] else None,
        f"samples           {s['samples']}",
        f"achieved rate     {f(s['rate_hz'], '.1f')} Hz",
        f"average power     {f(s['avg_power_uw'] and s['avg_power_uw'] / 1e6, '.3f')} W",
        f"energy            {f(s['energy_uj'] / 1e6, '.3f')} J over {s['duration_s']:.3f} s",
        f"overruns          {s['overruns']}",
        f"read errors       {s['read_errors']}",
        f"missed deadlines  {s['missed_deadlines']}",
        f"sampler CPU       {f(s['cpu_seconds'], '.3f')} s ({s['priority']}, CPU {s['cpu']})",
    ]
    if s.get("status") == "interrupted":
        lines.insert(0, f"INTERRUPTED by {signal.Signals(s['interrupted_by']).name}")
    if "exit_status" in s:
        lines.append(f"command status    {s['exit_status']}")
    return "\n".join(x for x in lines if x is not None)


def run(args: argparse.Namespace) -> int:
    cmd = _check(args)
    caught: list[int] = []
    summary, status = asyncio.run(_sample(args, cmd, caught))
    if args.json:
        keys = (
            "samples",
            "rate_hz",
            "avg_power_uw",
            "energy_uj",
            "overruns",
            "read_errors",
            "missed_deadlines",
            "cpu_seconds",
        )
        print(json.dumps({**{k: summary[k] for k in keys}, **summary}))
    else:
        print(_human(summary))
    if caught:
        # Interrupted: the summary is written and printed; let the shell see the signal.
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(caught[0], signal.SIG_DFL)
        os.kill(os.getpid(), caught[0])
    return status
