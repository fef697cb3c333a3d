"""The one time base: CLOCK_MONOTONIC nanoseconds.

The sampler, the supervisor and the workers all stamp events with CLOCK_MONOTONIC ns
(``time.monotonic_ns()`` on Linux is exactly that clock).  Wall-clock text is derived from a
monotonic stamp through an :class:`Anchor`, a (CLOCK_REALTIME, CLOCK_MONOTONIC) pair taken once,
by :func:`wall_text` and nothing else.  A stamp is never converted with ``datetime.now()``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import time
from dataclasses import dataclass

#: per-sample and per-layer timestamps, as the original scripts wrote them
SAMPLE_FMT = "%Y%m%d-%H:%M:%S.%f"
#: file-level timestamps (``idling_power.json``, ``<model>_tensorrt.json``)
STAMP_FMT = "%Y%m%d-%H%M%S"


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds, the clock every jetpower stamp is on."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A CLOCK_REALTIME/CLOCK_MONOTONIC pair taken at (almost) the same instant.

    ``error_ns`` bounds how far apart the two readings may be: the realtime read is bracketed by two
    monotonic reads and the anchor takes their mid-point.
    """

    realtime_ns: int
    monotonic_ns: int
    error_ns: int = 0

    @classmethod
    def now(cls, tries: int = 5) -> Anchor:
        """Take the tightest of a few bracketed readings."""
        best: Anchor | None = None
        for _ in range(tries):
            m0 = monotonic_ns()
            r = time.clock_gettime_ns(time.CLOCK_REALTIME)
            m1 = monotonic_ns()
            cand = cls(r, (m0 + m1) // 2, (m1 - m0 + 1) // 2)
            if best is None or cand.error_ns < best.error_ns:
                best = cand
        assert best is not None
        return best

    def to_realtime_ns(self, mono_ns: int) -> int:
        return self.realtime_ns + (mono_ns - self.monotonic_ns)

    def to_dict(self) -> dict[str, int]:
        return {
            "realtime_ns": self.realtime_ns,
            "monotonic_ns": self.monotonic_ns,
            "error_ns": self.error_ns,
        }

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Anchor:
        return cls(int(d["realtime_ns"]), int(d["monotonic_ns"]), int(d.get("error_ns", 0)))


def wall_datetime(mono_ns: int, anchor: Anchor) -> _dt.datetime:
    """Local wall-clock time of a monotonic stamp (local, as the original scripts wrote it)."""
    rt = anchor.to_realtime_ns(mono_ns)
    sec, ns = divmod(rt, 1_000_000_000)
    return _dt.datetime.fromtimestamp(sec).replace(microsecond=ns // 1000)


@functools.lru_cache(maxsize=1024)
def _second_text(sec: int, fmt: str) -> str:
    return _dt.datetime.fromtimestamp(sec).strftime(fmt)


def wall_text(mono_ns: int, anchor: Anchor, fmt: str = SAMPLE_FMT) -> str:
    """Format a monotonic stamp as wall-clock text. The only such conversion in jetpower.

    Formats ending in ``.%f`` (the per-sample ones) format each second once and append the
    microseconds: a profile has millions of stamps and strftime would dominate writing it.
    """
    rt = anchor.to_realtime_ns(mono_ns)
    if fmt.endswith(".%f"):
        sec, ns = divmod(rt, 1_000_000_000)
        return f"{_second_text(sec, fmt[:-3])}.{ns // 1000:06d}"
    return wall_datetime(mono_ns, anchor).strftime(fmt)


def parse_wall_text(text: str, fmt: str = SAMPLE_FMT) -> float:
    """Inverse of :func:`wall_text` for readers of the raw layout: POSIX seconds (local time)."""
    return _dt.datetime.strptime(text, fmt).timestamp()
