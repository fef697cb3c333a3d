"""Bookkeeping of the profiling pass in preallocated arrays, and streamed writing of its JSON.

The original scripts kept every (layer, ms, timestamp) as Python tuples in lists: gigabytes for
30000 runs of a large engine.  Here a pass of R runs over L layers is one float32 R x L matrix of
latencies (ms, as TensorRT reports them) plus two int64 vectors (start and end of each run on
CLOCK_MONOTONIC): 30000 x 200 is 24 MB.  Wall-clock text is produced only while writing, a chunk
at a time.

Window reconstruction (docs/DESIGN.md, "Time"): layer k of run r ran in
``[start_r + sum(lat[r, :k]), start_r + sum(lat[r, :k+1])]``; its timestamp is the window's end.
The time a run spends outside its layers (launch overhead, Python between engines) is not in any
window, so the reconstructed windows end early by at most that much; :meth:`LayerProfile.gap_stats`
measures it per run, and the worker states it as the alignment's expected error.

A backend that knows each layer's own window on CLOCK_MONOTONIC (stamped by hooks on CPU, placed
on the device clock from an anchored CUDA event on GPU) records it with
:meth:`LayerProfile.record_window`; those windows are then written as measured, not reconstructed,
and the gaps between layers no longer shift the timestamps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from jetpower.timebase import SAMPLE_FMT, Anchor, wall_text

#: entries formatted per write call
_CHUNK = 2048


class LayerProfile:
    """Per-layer latencies of ``runs`` profiled inferences over a fixed list of layer names."""

    def __init__(self, names: Sequence[str], runs: int) -> None:
        if len(set(names)) != len(names):
            raise ValueError("layer names must be unique")
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.runs = runs
        self.lat_ms = np.zeros((runs, len(self.names)), dtype=np.float32)
        self.seen = np.zeros((runs, len(self.names)), dtype=np.bool_)
        self.start_ns = np.zeros(runs, dtype=np.int64)
        self.end_ns = np.zeros(runs, dtype=np.int64)
        self.done = 0  # completed runs
        self.unknown_reports = 0  # reports of names not in ``names`` (counted, never silently lost)
        #: measured window ends, us after the run's start (float32: 0.06 us steps at 1 s), or None
        #: while no backend recorded a measured window; NaN where a layer has none
        self.end_us: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = [self.lat_ms, self.seen, self.start_ns, self.end_ns]
        if self.end_us is not None:
            arrays.append(self.end_us)
        return sum(a.nbytes for a in arrays)

    def record(self, run: int, layer: int, ms: float) -> None:
        """One layer's latency in one run (a second report in the same run adds to the first)."""
        self.lat_ms[run, layer] += ms
        self.seen[run, layer] = True

    def record_window(self, run: int, layer: int, start_ns: float, end_ns: float) -> None:
        """One layer's measured window on CLOCK_MONOTONIC (call after ``begin_run``).

        The latency is ``end - start``; the window's end is written as the layer's timestamp
        instead of the reconstruction.
        """
        if self.end_us is None:
            self.end_us = np.full((self.runs, len(self.names)), np.nan, dtype=np.float32)
        self.lat_ms[run, layer] += (end_ns - start_ns) / 1e6
        self.seen[run, layer] = True
        self.end_us[run, layer] = (end_ns - self.start_ns[run]) / 1e3

    def begin_run(self, run: int, start_ns: int) -> None:
        """The run's start, before its measured windows are recorded (``finish_run`` keeps it)."""
        self.start_ns[run] = start_ns

    def record_name(self, run: int, name: str, ms: float) -> None:
        i = self.index.get(name)
        if i is None:
            self.unknown_reports += 1
            return
        self.record(run, i, ms)

    def finish_run(self, run: int, start_ns: int, end_ns: int) -> None:
        self.start_ns[run] = start_ns
        self.end_ns[run] = end_ns
        self.done = run + 1

    def missing_reports(self) -> int:
        """How many (run, layer) cells of completed runs never got a report."""
        return int(self.seen[: self.done].size - np.count_nonzero(self.seen[: self.done]))

    def gap_stats(self) -> dict[str, float]:
        """Per-run time not covered by layer windows, ns: mean and max over completed runs."""
        n = self.done
        if n == 0:
            return {"mean_ns": 0.0, "max_ns": 0.0}
        covered = self.lat_ms[:n].sum(axis=1, dtype=np.float64) * 1e6
        gap = (self.end_ns[:n] - self.start_ns[:n]).astype(np.float64) - covered
        return {"mean_ns": float(gap.mean()), "max_ns": float(gap.max())}

    def window_ends_ns(self) -> Any:
        """Iterate (layer index, int64 array of window ends per run) in execution order."""
        n = self.done
        start = self.start_ns[:n].astype(np.float64)
        cum = start.copy()
        for j in range(len(self.names)):
            cum += self.lat_ms[:n, j].astype(np.float64) * 1e6
            if self.end_us is None:
                yield j, np.rint(cum).astype(np.int64)
                continue
            meas = self.end_us[:n, j].astype(np.float64)
            ends = np.where(np.isnan(meas), cum, start + meas * 1e3)
            yield j, np.rint(ends).astype(np.int64)

    def write_json(self, fh: IO[str], anchor: Anchor, fmt: str = SAMPLE_FMT) -> None:
        """Stream ``{name: [[ms, "wall text"], ...], ...}`` (trt_layer_latency.json) to ``fh``.

        Keys in execution order, one entry per completed run, latency first.  Memory stays at one
        column of the matrix plus one chunk of text.
        """
        n = self.done
        fh.write("{")
        for j, ends in self.window_ends_ns():
            if j:
                fh.write(",")
            fh.write("\n " + json.dumps(self.names[j]) + ": [")
            col = self.lat_ms[:n, j]
            for lo in range(0, n, _CHUNK):
                hi = min(n, lo + _CHUNK)
                parts = []
                for ms, end in zip(col[lo:hi].tolist(), ends[lo:hi].tolist(), strict=True):
                    parts.append(f'[{_num(ms)}, "{wall_text(end, anchor, fmt)}"]')
                if lo:
                    fh.write(", ")
                fh.write(", ".join(parts))
            fh.write("]")
        fh.write("\n}\n")


def _num(x: float) -> str:
    """A JSON number for ``x`` (NaN/inf are not JSON; they become null)."""
    return repr(x) if math.isfinite(x) else "null"
