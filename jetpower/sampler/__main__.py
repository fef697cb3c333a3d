"""The sampler process: ``python -m jetpower.sampler SPEC_JSON``.

Pins itself to one CPU, asks for SCHED_FIFO (falls back where not permitted), runs the C loop
until SIGTERM/SIGINT, then prints one JSON line on stdout: its CPU time and what it was granted.
Errors go to stderr as one line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import resource
import sys

from jetpower._process import die_with_parent
from jetpower.errors import SamplerError

FIFO_PRIORITY = 50


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        allowed = sorted(os.sched_getaffinity(0))
        raise SamplerError(f"cannot pin the sampler to CPU {cpu} (allowed: {allowed}): {e}") from e


def _raise_priority() -> str:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))
    except OSError as e:
        return f"SCHED_FIFO not permitted ({e.strerror}); running at normal priority"
    return f"SCHED_FIFO priority {FIFO_PRIORITY}"


def main(argv: list[str]) -> int:
    die_with_parent()
    spec = json.loads(argv[0])
    try:
        from jetpower import _native

        _pin(int(spec["cpu"]))
        priority = _raise_priority() if spec.get("fifo", True) else "normal priority (plan)"
        _native.run_loop(
            spec["ring"], spec["paths"], spec["names"], spec["units"],
            capacity=int(spec["capacity"]), rate_hz=float(spec["rate_hz"]),
        )
    except SamplerError as e:
        print(str(e), file=sys.stderr, flush=True)
        return 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_seconds": ru.ru_utime + ru.ru_stime, "priority": priority}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
