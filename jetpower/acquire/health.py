"""Sampler health: stalls seen as they happen, and the coverage of a requested window.

A sampler that stops publishing (stopped by a signal, starved of its CPU, stuck in a read) leaves
a hole in the stream that no counter of the ring shows: the C loop counts missed deadlines only
once it runs again, and a stopped process counts nothing.  :class:`GapWatch` follows the stamps
of every drained record and the clock: no new record for longer than ``max_gap_ns`` is a
``sampler_stalled`` warning at once (from the recorder's pump, which keeps running), and the next
record a ``sampler_resumed`` warning with the gap's length.  Every gap over the limit is kept, with
its ends on the run's clock (CLOCK_MONOTONIC ns): the campaign writes them into the manifest and
fails or re-measures a model whose timing or profiling window holds one.

:func:`window_health` judges one window from its sample stamps, over the window as requested
(``[start_ns, end_ns]``), not between its first and last sample: the time before the first
sample and after the last counts as a gap, and the achieved rate is samples / requested span.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from jetpower.log import get_logger

log = get_logger()

#: defaults of the plan's ``sampler.max_gap_s`` (max(0.5 s, 50 periods)) and ``min_coverage``
MIN_MAX_GAP_S = 0.5
MAX_GAP_PERIODS = 50
DEFAULT_MIN_COVERAGE = 0.99


def default_max_gap_s(rate_hz: float) -> float:
    """max(0.5 s, 50 periods) of ``rate_hz`` (a rate of 0: 0.5 s)."""
    return max(MIN_MAX_GAP_S, MAX_GAP_PERIODS / rate_hz) if rate_hz > 0 else MIN_MAX_GAP_S


@dataclass(frozen=True)
class Gap:
    """No record between ``start_ns`` (the last one before) and ``end_ns`` (the first one after,
    or the moment the stream ended while it lasted: then ``open`` is True)."""

    start_ns: int
    end_ns: int
    open: bool = False

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns < end_ns and self.end_ns > start_ns

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start_ns": self.start_ns, "end_ns": self.end_ns,
                             "seconds": round(self.seconds, 6)}
        if self.open:
            d["open"] = True
        return d


class GapWatch:
    """Follows a stream of record stamps; finds gaps over ``max_gap_ns`` as they happen.

    ``on_gap(gap)`` is called once per closed gap (and by :meth:`close` for one still open).
    """

    def __init__(self, max_gap_ns: int, *, on_gap: Callable[[Gap], None] | None = None) -> None:
        if max_gap_ns <= 0:
            raise ValueError(f"max_gap_ns {max_gap_ns}: expected a positive number")
        self.max_gap_ns = int(max_gap_ns)
        self.on_gap = on_gap
        self.gaps: list[Gap] = []
        self.last_ns: int | None = None
        self.stalled_at_ns: int | None = None  # when the stall was noticed (None: not stalled)

    def feed(self, t_ns: npt.NDArray[np.int64]) -> None:
        """Stamps of the records of one drained batch, in order."""
        if not len(t_ns):
            return
        t = np.asarray(t_ns, dtype=np.int64)
        if self.last_ns is not None:
            t = np.concatenate(([self.last_ns], t))
        d = np.diff(t)
        for k in np.flatnonzero(d > self.max_gap_ns).tolist():
            self._closed(Gap(int(t[k]), int(t[k + 1])))
        self.last_ns = int(t[-1])
        self.stalled_at_ns = None

    def _closed(self, gap: Gap) -> None:
        self.gaps.append(gap)
        log.warning("sampler_resumed", gap_s=round(gap.seconds, 3), gap_start_ns=gap.start_ns,
                    gap_end_ns=gap.end_ns, max_gap_s=self.max_gap_ns / 1e9)
        if self.on_gap is not None:
            self.on_gap(gap)

    def check(self, now_ns: int) -> bool:
        """Whether the stream is stalled at ``now_ns``; the first time, a warning event."""
        if self.last_ns is None or now_ns - self.last_ns <= self.max_gap_ns:
            return False
        if self.stalled_at_ns is None:
            self.stalled_at_ns = now_ns
            log.warning("sampler_stalled", last_sample_ns=self.last_ns,
                        silent_s=round((now_ns - self.last_ns) / 1e9, 3),
                        max_gap_s=self.max_gap_ns / 1e9,
                        note="no new power sample: this stretch of the run is not measured")
        return True

    def close(self, end_ns: int) -> Gap | None:
        """The stream ends at ``end_ns``: a gap still open then is recorded, marked open."""
        if self.last_ns is None or end_ns - self.last_ns <= self.max_gap_ns:
            return None
        gap = Gap(self.last_ns, end_ns, open=True)
        self.gaps.append(gap)
        self.last_ns = end_ns  # counted once
        if self.on_gap is not None:
            self.on_gap(gap)
        return gap

    def within(self, start_ns: int, end_ns: int, now_ns: int | None = None) -> list[Gap]:
        """The gaps that overlap ``[start_ns, end_ns]``; a stall still going on at ``now_ns``
        (default ``end_ns``) counts as a gap up to then when it began inside the window."""
        found = [g for g in self.gaps if g.overlaps(start_ns, end_ns)]
        now = end_ns if now_ns is None else now_ns
        last = self.last_ns
        if last is not None and last < end_ns and now - last > self.max_gap_ns \
                and not any(g.start_ns >= last for g in self.gaps):
            found.append(Gap(last, now, open=True))
        return found


def window_health(t_ns: npt.ArrayLike, start_ns: int, end_ns: int, *, period_ns: int,
                  max_gap_ns: int, min_coverage: float = DEFAULT_MIN_COVERAGE) -> dict[str, Any]:
    """How well ``[start_ns, end_ns]`` is sampled, from the stamps ``t_ns`` (any; those outside
    the window are ignored).

    ``coverage``: samples in the window x the paced period / the window's length (at most 1),
    so a rate that collapsed and a hole both lower it.  ``largest_gap_s``: the longest stretch
    without a sample, the window's edges included.  ``gaps``: stretches over ``max_gap_ns``.
    ``flagged``: coverage under ``min_coverage`` or a gap over the limit.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    inside = t[(t >= start_ns) & (t <= end_ns)]
    span = max(0, end_ns - start_ns)
    edges = np.concatenate(([start_ns], inside, [end_ns]))
    d = np.diff(edges)
    largest = int(d.max()) if d.size else 0
    over = np.flatnonzero(d > max_gap_ns)
    gaps = [{"start_ns": int(edges[k]), "end_ns": int(edges[k + 1]),
             "seconds": round(int(d[k]) / 1e9, 6)} for k in over.tolist()]
    return _verdict(int(inside.size), span, period_ns, largest, gaps, min_coverage)


def _verdict(n: int, span: int, period_ns: int, largest: int, gaps: list[dict[str, Any]],
             min_coverage: float) -> dict[str, Any]:
    """The health dict of a window of ``span`` ns holding ``n`` samples (both judges use it)."""
    coverage = min(1.0, n * period_ns / span) if span > 0 and period_ns > 0 else (
        1.0 if n else 0.0)
    return {
        "requested_s": round(span / 1e9, 6),
        "samples": n,
        "achieved_rate_hz": round(n / (span / 1e9), 3) if span > 0 else 0.0,
        "coverage": round(coverage, 6),
        "largest_gap_s": round(largest / 1e9, 6),
        "gaps": gaps,
        "flagged": bool(coverage < min_coverage or gaps),
    }


#: interior stretches at least this long are kept by :class:`StreamHealth` (a gap limit is never
#: below 0.5 s; shorter ones only count towards the largest gap)
KEEP_GAP_NS = 10_000_000


class StreamHealth:
    """What :func:`window_health` needs of a window, gathered batch by batch in constant memory
    (count, first and last stamp, the largest interior gap, the interior gaps over 10 ms)."""

    def __init__(self, start_ns: int, end_ns: int | None = None) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.count = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.largest_ns = 0
        self.long: list[tuple[int, int]] = []

    def feed(self, t_ns: npt.NDArray[np.int64]) -> None:
        t = np.asarray(t_ns, dtype=np.int64)
        end = self.end_ns
        t = t[(t >= self.start_ns) & ((t <= end) if end is not None else True)]
        if not t.size:
            return
        if self.last_ns is not None:
            t = np.concatenate(([self.last_ns], t))
            self.count -= 1
        else:
            self.first_ns = int(t[0])
        d = np.diff(t)
        if d.size:
            self.largest_ns = max(self.largest_ns, int(d.max()))
            for k in np.flatnonzero(d >= KEEP_GAP_NS).tolist():
                self.long.append((int(t[k]), int(t[k + 1])))
        self.count += int(t.size)
        self.last_ns = int(t[-1])

    def health(self, start_ns: int, end_ns: int, *, period_ns: int, max_gap_ns: int,
               min_coverage: float = DEFAULT_MIN_COVERAGE) -> dict[str, Any]:
        span = max(0, end_ns - start_ns)
        n = self.count
        if self.first_ns is None or self.last_ns is None:
            stretches = [(start_ns, end_ns)]
        else:
            stretches = [(start_ns, self.first_ns), *self.long, (self.last_ns, end_ns)]
        gaps = [{"start_ns": a, "end_ns": b, "seconds": round((b - a) / 1e9, 6)}
                for a, b in stretches if b - a > max_gap_ns]
        largest = max([self.largest_ns, *(b - a for a, b in stretches)])
        return _verdict(n, span, period_ns, largest, gaps, min_coverage)
