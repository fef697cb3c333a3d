"""How long the isolation pass takes: one formula for the worker (which plans its blocks by
it) and for ``validate``'s estimate (:mod:`jetpower.plan._estimate`)."""

from __future__ import annotations

import math

#: the isolation pass's defaults: rounds, counter periods per block, settling time, the counter's
#: update period (NVML on an H100/H200)
ISOLATION_REPETITIONS = 3
ISOLATION_PERIODS = 3
ISOLATION_SETTLE_S = 0.02
ISOLATION_SETTLE_PERIODS = 1.0
ISOLATION_COUNTER_PERIOD_S = 0.1


def isolation_block_seconds(
    periods: int, settle_s: float, settle_periods: float, period_s: float
) -> float:
    """One block of the isolation pass: settling, half a period on average until the next edge,
    then ``periods`` periods."""
    return max(settle_s, settle_periods * period_s) + (periods + 0.5) * period_s


def isolation_seconds(
    layers: int,
    *,
    repetitions: int = ISOLATION_REPETITIONS,
    periods: int = ISOLATION_PERIODS,
    settle_s: float = ISOLATION_SETTLE_S,
    settle_periods: float = ISOLATION_SETTLE_PERIODS,
    period_s: float = ISOLATION_COUNTER_PERIOD_S,
    max_seconds: float = math.inf,
) -> float:
    """Guessed seconds of an isolation pass over ``layers`` leaf layers (plus the whole model and
    an idle block per round, and the counter's characterisation), at most ``max_seconds``.

    One block: :func:`isolation_block_seconds`."""
    block = isolation_block_seconds(periods, settle_s, settle_periods, period_s)
    return min(max_seconds, (layers + 2) * repetitions * block + 6 * period_s)
