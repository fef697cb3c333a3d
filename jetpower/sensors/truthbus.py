"""The truth bus: the worker tells the simulated sensor which layer runs, through shared memory.

Simulated runs only.  The supervisor creates one bus file per run (:func:`create`) and gives its
path to the simulator (``--truth-bus``) and to every worker (config key ``truth_bus``).  A worker
opens it in its profiling pass (:class:`Publisher`), writes its layer names once and then a mark
at the start and at the end of every layer call: (layer index, CLOCK_MONOTONIC ns).  The
simulator (:class:`Subscriber`) turns the marks into the true power its conversions average.

File layout (little-endian, format version 1)::

    header (128 bytes)  magic "JPTBUS\\0\\0", version u32, header bytes u32, slots u32,
                        slot bytes u32, names offset u64, names bytes u64,
                        next sequence u64 (a hint: the writer's next slot number)
    slots               slots x 32 bytes: seq u64, t_ns i64, table u32, layer u32,
                        kind u8 (1 begin, 2 end), 3 pad, crc32 u32 of the 28 bytes before it
    names               table id u32, length u32, crc32 u32, pad u32, then the layer names
                        as UTF-8, each followed by a NUL byte

Python has no memory barriers, so nothing relies on the order in which stores become visible:
every slot and the names table carry a CRC, and a reader takes a slot only when its CRC holds and
its sequence number is the one expected.  A slot being written reads as not yet there.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jetpower.errors import SensorError

MAGIC = b"JPTBUS\0\0"
VERSION = 1
HEADER = struct.Struct("<8sIIIIQQQ")  # magic, version, header bytes, slots, slot bytes,
HEADER_BYTES = 128                   # names offset, names bytes, next seq
_NEXT_AT = HEADER.size - 8
SLOT = struct.Struct("<qqIIB3x")  # seq, t_ns, table, layer, kind (28 bytes), then crc32
SLOT_BYTES = 32
NAMES_HEAD = struct.Struct("<IIII")  # table id, length, crc, pad
BEGIN, END = 1, 2
DEFAULT_SLOTS = 1 << 16
DEFAULT_NAMES_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Mark:
    """One published mark: layer ``layer`` of names table ``table`` began or ended at ``t_ns``."""

    seq: int
    t_ns: int
    table: int
    layer: int
    kind: int  # BEGIN or END


def create(path: Path, *, slots: int = DEFAULT_SLOTS,
           names_bytes: int = DEFAULT_NAMES_BYTES) -> Path:
    """Create an empty bus file at ``path`` (which must not exist); returns ``path``."""
    if slots < 16 or names_bytes < 4096:
        raise SensorError(f"truth bus too small: {slots} slots, {names_bytes} name bytes")
    names_at = HEADER_BYTES + slots * SLOT_BYTES
    size = names_at + names_bytes
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise SensorError(f"cannot create the truth bus {path}: {e.strerror}") from e
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, HEADER.pack(MAGIC, VERSION, HEADER_BYTES, slots, SLOT_BYTES, names_at,
                                  names_bytes, 0), 0)
    finally:
        os.close(fd)
    return path


class _Mapped:
    def __init__(self, path: Path, *, write: bool) -> None:
        try:
            fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
        except OSError as e:
            raise SensorError(f"cannot open the truth bus {path}: {e.strerror}") from e
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise SensorError(f"{path} is not a truth bus ({size} bytes)")
            self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        magic, version, hdr, slots, slot_bytes, names_at, names_bytes, _ = HEADER.unpack_from(
            self.mm, 0)
        if magic != MAGIC:
            self.mm.close()
            raise SensorError(f"{path} is not a truth bus (magic {magic!r})")
        if version != VERSION:
            self.mm.close()
            raise SensorError(f"truth bus {path} has format version {version}; this jetpower "
                              f"reads version {VERSION}")
        if (hdr != HEADER_BYTES or slot_bytes != SLOT_BYTES
                or names_at + names_bytes > size or names_at < hdr + slots * slot_bytes):
            self.mm.close()
            raise SensorError(f"truth bus {path} has an inconsistent header")
        self.path = path
        self.slots = slots
        self.names_at = names_at
        self.names_bytes = names_bytes

    def next_hint(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, _NEXT_AT)[0])

    def names_head(self) -> tuple[int, int, int]:
        table, length, crc, _ = NAMES_HEAD.unpack_from(self.mm, self.names_at)
        return table, length, crc

    def read_names(self) -> tuple[int, tuple[str, ...]] | None:
        table, length, crc = self.names_head()
        start = self.names_at + NAMES_HEAD.size
        if table == 0 or length > self.names_bytes - NAMES_HEAD.size:
            return None
        blob = bytes(self.mm[start:start + length])
        if zlib.crc32(blob) != crc:
            return None
        return table, tuple(blob.decode("utf-8").split("\0")[:-1])

    def close(self) -> None:
        self.mm.close()


class Publisher:
    """The worker's side: one names table, then begin/end marks (about 2 us each)."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        self._m = _Mapped(path, write=True)
        blob = b"".join(n.encode("utf-8") + b"\0" for n in names)
        if any("\0" in n for n in names):
            raise SensorError("a layer name contains a NUL byte; the truth bus cannot carry it")
        if len(blob) > self._m.names_bytes - NAMES_HEAD.size:
            raise SensorError(
                f"the truth bus {path} holds {self._m.names_bytes - NAMES_HEAD.size} bytes of "
                f"layer names; this model's {len(names)} names need {len(blob)}")
        old = self._m.read_names()
        self.table = (old[0] if old else 0) + 1
        mm, at = self._m.mm, self._m.names_at
        NAMES_HEAD.pack_into(mm, at, 0, 0, 0, 0)  # invalid while it is rewritten
        mm[at + NAMES_HEAD.size:at + NAMES_HEAD.size + len(blob)] = blob
        NAMES_HEAD.pack_into(mm, at, self.table, len(blob), zlib.crc32(blob), 0)
        self._seq = self._m.next_hint()
        self._slots = self._m.slots
        self._n = len(names)
        self.dropped = 0

    def _put(self, kind: int, layer: int, t_ns: int) -> None:
        if not 0 <= layer < self._n:  # a leaf call beyond the table: the run itself fails later
            self.dropped += 1
            return
        seq = self._seq
        body = SLOT.pack(seq, t_ns, self.table, layer, kind)
        at = HEADER_BYTES + (seq % self._slots) * SLOT_BYTES
        self._m.mm[at:at + SLOT_BYTES] = body + zlib.crc32(body).to_bytes(4, "little")
        self._seq = seq + 1
        struct.pack_into("<Q", self._m.mm, _NEXT_AT, seq + 1)

    def begin(self, layer: int, t_ns: int) -> None:
        self._put(BEGIN, layer, t_ns)

    def end(self, layer: int, t_ns: int) -> None:
        self._put(END, layer, t_ns)

    def close(self) -> None:
        self._m.close()


class Subscriber:
    """The simulator's side: new marks in order, names tables by id, and what was lost."""

    def __init__(self, path: Path) -> None:
        self._m = _Mapped(path, write=False)
        self.next = self._m.next_hint()  # marks written before we looked are not ours
        self.lost = 0
        self._tables: dict[int, tuple[str, ...]] = {}
        self._looked: tuple[int, int, int] | None = None

    def poll(self, limit: int = 100_000) -> list[Mark]:
        """The marks published since the last call (at most ``limit``), in order."""
        out: list[Mark] = []
        mm, slots = self._m.mm, self._m.slots
        while len(out) < limit:
            at = HEADER_BYTES + (self.next % slots) * SLOT_BYTES
            raw = mm[at:at + SLOT_BYTES]
            body = raw[:28]
            if zlib.crc32(body) != int.from_bytes(raw[28:], "little"):
                break  # not written yet, or being written
            seq, t_ns, table, layer, kind = SLOT.unpack(body)
            if seq == self.next:
                out.append(Mark(seq, t_ns, table, layer, kind))
                self.next += 1
            elif seq > self.next:  # the writer lapped us: skip to the oldest slot still there
                oldest = max(self.next + 1, self._m.next_hint() - slots + 1)
                self.lost += oldest - self.next
                self.next = oldest
            else:
                break  # an older round's slot: the next mark is not there yet
        return out

    def names(self, table: int) -> tuple[str, ...] | None:
        """The layer names of ``table``, or None when the bus no longer (or not yet) holds it."""
        if table not in self._tables and self._m.names_head() != self._looked:
            self._looked = self._m.names_head()  # read each version of the table once
            got = self._m.read_names()
            if got is not None:
                self._tables[got[0]] = got[1]
            else:
                self._looked = None  # caught mid-rewrite: look again next time
        return self._tables.get(table)

    def close(self) -> None:
        self._m.close()
