"""The samples file (``jetpower_samples.csv``, and ``samples.csv`` of ``jetpower sample``): its one
writer and its one reader.

```
# jetpower-samples v2
t_ns,<RAIL>_mV,<RAIL>_mA,<RAIL>_uW[,<RAIL>_uJ],<RAIL>_read_start_ns,<RAIL>_read_end_ns,...,total_uW
```

v2 adds, per rail, the CLOCK_MONOTONIC start and end of the read of its reading channel (the
current file of a mV x mA rail, else its power or counter), from the ring v2 records: where a
window-mean value was latched (docs/FORMATS.md).  Empty where the ring had no stamp.  v1 files
(without those columns) stay readable: :func:`read` takes both.

Rows are appended whole (one write of complete lines).  A process killed mid-write, or a file
read while it is still being written, can end in a cut line: the reader drops a cut *last* row and
says so (:attr:`Samples.torn`); a malformed row anywhere else is an error.  The reader parses with
numpy over the whole text: a campaign holds millions of rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from jetpower.acquire.decode import Batch, Reading
from jetpower.errors import UsageError, storage_error
from jetpower.sensors import SensorSet

MAGIC = "# jetpower-samples v"
VERSION = 2
#: versions :func:`read` accepts (1: no per-read stamps)
READABLE = ("1", "2")
HEADER_LINE = f"{MAGIC}{VERSION}"

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class SamplesFileError(ValueError):
    """The file is not a samples file this jetpower reads, or a row is malformed."""


def columns(sensor: SensorSet) -> list[str]:
    """The column names of a samples file of ``sensor`` (its rails, in order, then the total)."""
    out = ["t_ns"]
    for r in sensor.rails:
        if r.derivation == "v_x_i":
            out += [f"{r.label}_mV", f"{r.label}_mA"]
        out.append(f"{r.label}_uW")
        if r.energy is not None:
            out.append(f"{r.label}_uJ")
        out += [f"{r.label}_read_start_ns", f"{r.label}_read_end_ns"]
    out.append("total_uW")
    return out


class Writer:
    """Formats the header and the rows of a samples file of one sensor."""

    def __init__(self, sensor: SensorSet) -> None:
        self.columns = columns(sensor)
        self._vxi = tuple(r.derivation == "v_x_i" for r in sensor.rails)
        self._has_energy = tuple(r.energy is not None for r in sensor.rails)

    def header(self) -> str:
        return f"{HEADER_LINE}\n{','.join(self.columns)}\n"

    def row(self, r: Reading) -> str:
        cells = [str(r.t_ns)]
        for k, ((mv, ma, uw), vxi) in enumerate(zip(r.rails, self._vxi)):
            if vxi:
                cells.append("" if mv is None else str(mv))
                cells.append("" if ma is None else str(ma))
            cells.append("" if uw is None else f"{uw:.0f}")
            if self._has_energy[k]:
                uj = r.energy_uj[k] if k < len(r.energy_uj) else None
                cells.append("" if uj is None else str(uj))
            st = r.read_ns[k] if k < len(r.read_ns) else None
            cells += ("", "") if st is None else (str(st[0]), str(st[1]))
        cells.append("" if r.total_uw is None else f"{r.total_uw:.0f}")
        return ",".join(cells) + "\n"

    def rows(self, readings: Sequence[Reading]) -> str:
        if isinstance(readings, Batch):
            return self.rows_batch(readings)
        return "".join(map(self.row, readings))

    def rows_batch(self, b: Batch) -> str:
        """The rows of a whole batch at once, formatted in numpy (same text as :meth:`row`:
        integers as they are, powers rounded to whole uW, half to even, empty where invalid)."""
        n = len(b)
        if not n:
            return ""
        cols: list[F64 | I64] = [b.t_ns]
        for k, ((mv, ma, uw), vxi) in enumerate(zip(b.rails, self._vxi)):
            if vxi:
                cols += [mv, ma]
            cols.append(uw)
            if self._has_energy[k]:
                e = b.energy_uj[k]
                cols.append(e if e is not None else np.full(n, np.nan))
            st = b.read_ns[k]
            if st is None:
                cols += [np.full(n, np.nan), np.full(n, np.nan)]
            else:  # exact int64 (ns of a long uptime exceed float64's integers), empty when unread
                unread = (st[0] == 0) & (st[1] == 0)
                cols += [np.ma.MaskedArray(st[0], unread), np.ma.MaskedArray(st[1], unread)]
        cols.append(b.total_uw)
        return format_int_table(cols)


_POW10 = 10 ** np.arange(19, dtype=np.int64)
#: the four ASCII digits of 0..9999
_DIGITS4 = np.array([list(f"{i:04d}".encode()) for i in range(10000)], dtype=np.uint8)


def format_int_table(cols: Sequence[F64 | I64]) -> str:
    """CSV text of columns of integers, one row per element (float columns are rounded half
    to even, NaN is an empty cell; masked cells of a masked integer column are empty too).

    Every digit is placed by numpy (four at a time, from a table) into one byte matrix, whose
    kept bytes are the text; no Python per row or cell."""
    n = len(cols[0])
    prepared = []
    for col in cols:
        if isinstance(col, np.ma.MaskedArray):
            empty = np.ma.getmaskarray(col)
            x = col.filled(0).astype(np.int64)
        elif col.dtype.kind == "f":
            empty = np.isnan(col)
            x = np.rint(np.where(empty, 0.0, col)).astype(np.int64)
        else:
            empty = None
            x = col.astype(np.int64)
        neg = x < 0
        v = np.abs(x)
        used = np.searchsorted(_POW10, v, side="right").clip(min=1) + neg  # characters
        groups = -(-int(used.max()) // 4)  # at most 5: int64 has 19 digits and a sign
        prepared.append((v, neg, used, empty, groups))
    total = sum(4 * g + 1 for *_, g in prepared)
    table = np.empty((n, total), dtype=np.uint8)
    keep = np.ones((n, total), dtype=bool)
    at = 0
    for c, (v, neg, used, empty, groups) in enumerate(prepared):
        width = 4 * groups
        for g in range(groups):
            lo = at + width - 4 * (g + 1)
            table[:, lo:lo + 4] = _DIGITS4[v // _POW10[4 * g] % 10000]
        block = keep[:, at:at + width]
        first = (width - used)[:, None]
        pos = np.arange(width)[None, :]
        np.greater_equal(pos, first, out=block)
        if empty is not None and empty.any():
            block[empty] = False
        if neg.any():
            rows = np.flatnonzero(neg)
            table[rows, at + width - used[rows]] = ord("-")
        table[:, at + width] = ord("\n") if c == len(prepared) - 1 else ord(",")
        at += width + 1
    return table[keep].tobytes().decode("ascii")


class RowFile:
    """A samples file open for writing whole rows: each ``write`` is complete lines, sent with
    unbuffered writes in a thread (never blocking the loop).  A write that fails (a full or
    read-only disk) is undone, the file cut back to its last whole row, and raised as
    :class:`~jetpower.errors.StorageError`.  Never opened through a symbolic link."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UsageError(f"{path} is a symbolic link: jetpower never writes through one "
                                 "out of a result directory") from None
            raise _storage(path, e) from None
        #: bytes in the file: all of them whole rows
        self.size = 0

    async def write(self, text: str) -> None:
        await asyncio.to_thread(self._write, text.encode("ascii"))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise _storage(self.path, e) from None
        self.size += len(data)

    async def flush(self) -> None:
        """Nothing is buffered: what was written can be read back."""

    async def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def ends_torn(path: Path) -> bool:
    """Whether ``path`` ends in a cut row (no final newline): its reader will drop that row."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _storage(path: Path, e: OSError) -> Exception:
    return storage_error(e, path) or e


@dataclass(frozen=True)
class Samples:
    """Rows of a samples file: ``t_ns`` and the requested columns (NaN where a cell is empty)."""

    path: Path
    columns: tuple[str, ...]
    t_ns: I64
    values: dict[str, F64]
    #: rows dropped because the file ended in the middle of one (0 or 1)
    torn: int = 0

    def __len__(self) -> int:
        return int(self.t_ns.size)


def read(path: Path, *, offset: int = 0, want: Sequence[str] = ("total_uW",),
         optional: Sequence[str] = ()) -> Samples:
    """The rows of ``path`` from byte ``offset`` on (0: all), with the columns ``want`` (each must
    exist) and ``optional`` (read where present).

    Raises :class:`SamplesFileError` for a wrong first line, an unknown version, a missing column,
    a malformed row other than a cut last one, or a cell that is not a number; ``OSError`` as is.
    """
    with open(path, "rb") as f:
        first = f.readline().decode("ascii", "replace").rstrip("\r\n")
        if not first.startswith(MAGIC):
            raise SamplesFileError(f"{path}: not a jetpower samples file (first line "
                                   f"{first[:60]!r}; expected {HEADER_LINE!r})")
        version = first[len(MAGIC):]
        if version not in READABLE:
            raise SamplesFileError(f"{path}: samples format version {version!r} unknown (this "
                                   f"jetpower reads v{', v'.join(READABLE)})")
        header = f.readline().decode("ascii", "replace").rstrip("\r\n")
        if not header:
            raise SamplesFileError(f"{path}: no header line")
        if offset > f.tell():
            f.seek(offset)
        body = f.read()
    names = tuple(header.split(","))
    if "t_ns" not in names:
        raise SamplesFileError(f"{path}: header lacks t_ns: {list(names)}")
    missing = [c for c in want if c not in names]
    if missing:
        raise SamplesFileError(f"{path}: header lacks {', '.join(missing)}: {list(names)}")
    lines = body.split(b"\n")
    torn = 0
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:  # the file does not end with a newline: its last row was cut short
        lines.pop()
        torn = 1
    lines = [ln.rstrip(b"\r") for ln in lines if ln.strip()]
    ncol = len(names)
    counts = np.fromiter((ln.count(b",") for ln in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(counts != ncol - 1)
    if bad.size:
        raise SamplesFileError(f"{path}: a row does not have {ncol} cells: "
                               f"{lines[int(bad[0])][:80]!r}")
    cells = b",".join(lines).split(b",") if lines else []
    cols = [c for c in (*want, *optional) if c in names]
    try:
        t = np.array(cells[names.index("t_ns")::ncol], dtype=np.int64)
        values = {c: np.array([x or b"nan" for x in cells[names.index(c)::ncol]],
                              dtype=np.float64) for c in cols}
    except ValueError as e:
        raise SamplesFileError(f"{path}: a cell is not a number ({e})") from e
    return Samples(path, names, t, values, torn)
