"""The original ``<model>_power_log.log``: ``%Y%m%d-%H:%M:%S.%f,<mV>,<mA>`` per sample of the
total rail (format kept exactly; see DESIGN.md), written while a model's benchmark runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiofiles

from jetpower.acquire.decode import Reading
from jetpower.timebase import Anchor, wall_text


def power_log_line(r: Reading, anchor: Anchor) -> str | None:
    """One line of ``<model>_power_log.log``; ``None`` when the total could not be read."""
    if r.log_mv is None or r.log_ma is None:
        return None
    ma = r.log_ma
    ma_text = str(int(ma)) if ma == int(ma) else f"{ma:.3f}"
    return f"{wall_text(r.t_ns, anchor)},{r.log_mv},{ma_text}\n"


class PowerLogSink:
    """Writes the original ``<model>_power_log.log`` lines of readings from ``start_ns`` on."""

    def __init__(self, path: Path, anchor: Anchor, start_ns: int) -> None:
        self.path = path
        self.anchor = anchor
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.lines = 0
        self.skipped = 0
        self._pending: list[str] = []
        self._fh: Any = None

    def feed(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if r.t_ns < self.start_ns or (self.end_ns is not None and r.t_ns > self.end_ns):
                continue
            line = power_log_line(r, self.anchor)
            if line is None:
                self.skipped += 1
            else:
                self._pending.append(line)

    async def flush(self) -> None:
        if not self._pending:
            return
        if self._fh is None:
            self._fh = await aiofiles.open(self.path, "a", encoding="utf-8")
        text, self._pending = "".join(self._pending), []
        self.lines += text.count("\n")
        await self._fh.write(text)

    async def close(self) -> None:
        await self.flush()
        if self._fh is None:  # no sample at all: still leave the (empty) file the layout promises
            self._fh = await aiofiles.open(self.path, "a", encoding="utf-8")
        await self._fh.close()
        self._fh = None
