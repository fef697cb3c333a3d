"""Fast, strict readers of the raw files: wall-clock text, power logs, samples CSV, layer JSON.

A campaign holds millions of timestamps (30000 profiled runs x 200 layers), so text is parsed with
numpy on fixed-width byte columns.  The calendar part (date, hour, minute: local time) goes through
:func:`jetpower.timebase.parse_wall_text` once per distinct minute, so the one inverse conversion
of the time base is respected; seconds and microseconds are added as integers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jetpower.acquire import samples_csv
from jetpower.report._errors import ResultError
from jetpower.timebase import SAMPLE_FMT, parse_wall_text

_W = 24  # len("20240101-12:34:56.123456")
_SEP = {8: ord("-"), 11: ord(":"), 14: ord(":"), 17: ord(".")}
_DIGITS = [i for i in range(_W) if i not in _SEP]
_WS = re.compile(r"\s*")


def _slow_stamps(stamps: Sequence[str], what: str) -> npt.NDArray[np.int64]:
    out = np.empty(len(stamps), dtype=np.int64)
    for i, s in enumerate(stamps):
        try:
            out[i] = round(parse_wall_text(s, SAMPLE_FMT) * 1e6) * 1000
        except (TypeError, ValueError) as e:
            raise ResultError(f"{what}: entry {i}: bad timestamp {s!r} ({SAMPLE_FMT})") from e
    return out


def stamps_to_posix_ns(stamps: Sequence[str] | bytes, what: str) -> npt.NDArray[np.int64]:
    """POSIX ns of ``%Y%m%d-%H:%M:%S.%f`` local-time stamps (a list, or their bytes joined).

    Resolution: the text's microsecond.  Malformed text raises :class:`ResultError` naming ``what``.
    """
    if isinstance(stamps, bytes):
        joined = stamps
    else:
        try:
            joined = "".join(stamps).encode("ascii")
        except (TypeError, UnicodeEncodeError) as e:
            raise ResultError(f"{what}: timestamps are not ASCII text") from e
    if len(joined) % _W:
        if isinstance(stamps, bytes):
            raise ResultError(f"{what}: timestamps are not {_W}-character {SAMPLE_FMT} text")
        return _slow_stamps(stamps, what)
    b = np.frombuffer(joined, dtype=np.uint8).reshape(-1, _W)
    if b.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    d = b[:, _DIGITS].astype(np.int64) - 48
    seps_ok = all(bool((b[:, i] == c).all()) for i, c in _SEP.items())
    if not seps_ok or d.min() < 0 or d.max() > 9:
        if isinstance(stamps, bytes):
            stamps = [joined[i : i + _W].decode() for i in range(0, len(joined), _W)]
        return _slow_stamps(stamps, what)
    # digit columns: YYYYMMDD(0-7) HH(8,9) MM(10,11) SS(12,13) ffffff(14-19)
    place = 10 ** np.arange(11, -1, -1, dtype=np.int64)
    minute_key = d[:, :12] @ place
    sec = d[:, 12] * 10 + d[:, 13]
    us = d[:, 14:20] @ (10 ** np.arange(5, -1, -1, dtype=np.int64))
    keys, inv = np.unique(minute_key, return_inverse=True)
    base = np.empty(keys.size, dtype=np.int64)
    for j, k in enumerate(keys.tolist()):
        t = f"{k:012d}"
        try:
            base[j] = round(parse_wall_text(f"{t[:8]}-{t[8:10]}:{t[10:12]}:00.000000")) * 10**9
        except ValueError as e:
            raise ResultError(f"{what}: impossible date/time {t}") from e
    if sec.max() > 59:
        raise ResultError(f"{what}: a timestamp has a seconds field above 59")
    return base[inv.reshape(-1)] + sec * 10**9 + us * 1000


def read_power_log(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """An original ``<model>_power_log.log``: (POSIX ns, power uW = mV x mA) per line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ResultError(f"cannot read {path}: {e.strerror}") from e
    lines = [ln.strip() for ln in raw.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return np.empty(0, dtype=np.int64), np.empty(0)
    if any(len(ln) < _W + 4 or ln[_W : _W + 1] != b"," for ln in lines):
        bad = next(i for i, ln in enumerate(lines) if len(ln) < _W + 4 or ln[_W] != ord(","))
        raise ResultError(f"{path}: line {bad + 1} is not 'stamp,mV,mA': {lines[bad][:60]!r}")
    t = stamps_to_posix_ns(b"".join(ln[:_W] for ln in lines), str(path))
    fields = b",".join(ln[_W + 1 :] for ln in lines).split(b",")
    if len(fields) != 2 * len(lines):
        raise ResultError(f"{path}: every line must hold exactly 'stamp,mV,mA'")
    try:
        v = np.array(fields, dtype=np.float64).reshape(-1, 2)
    except ValueError as e:
        raise ResultError(f"{path}: a voltage or current is not a number") from e
    return t, v[:, 0] * v[:, 1]


def read_samples_csv(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """``jetpower_samples.csv``: (t_ns monotonic, total_uW with NaN for invalid reads, rows
    dropped because the file ended in the middle of one), through the one reader of that file."""
    try:
        s = samples_csv.read(path)
    except OSError as e:
        raise ResultError(f"cannot read {path}: {e.strerror}") from e
    except samples_csv.SamplesFileError as e:
        raise ResultError(str(e)) from e
    return s.t_ns, s.values["total_uW"], s.torn


def _top_level_items(text: str, what: str) -> Iterator[tuple[str, Any]]:
    """(key, value) of a JSON object, one at a time, in file order (bounded memory)."""
    dec = json.JSONDecoder()

    def skip(i: int) -> int:
        m = _WS.match(text, i)
        return m.end() if m else i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ResultError(f"{what}: not a JSON object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        return
    while True:
        try:
            key, i = dec.raw_decode(text, i)
            i = skip(i)
            ok = text[i : i + 1] == ":" and isinstance(key, str)
            value, i = dec.raw_decode(text, skip(i + 1)) if ok else (None, i)
        except ValueError as e:
            raise ResultError(f"{what}: invalid JSON near character {i}: {e}") from e
        if not ok:
            raise ResultError(f"{what}: invalid JSON near character {i}: want '\"name\": [...]'")
        yield key, value
        i = skip(i)
        c = text[i : i + 1]
        if c == "}":
            return
        if c != ",":
            raise ResultError(f"{what}: invalid JSON near character {i}")
        i = skip(i + 1)


def read_layer_latency(
    path: Path,
) -> Iterator[tuple[str, npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """``trt_layer_latency.json``: (layer, latency ms, window-end POSIX ns) per layer, in order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultError(f"cannot read {path}: {e}") from e
    for name, entries in _top_level_items(text, str(path)):
        what = f"{path}: layer {name!r}"
        if not isinstance(entries, list):
            raise ResultError(f"{what}: want a list of [ms, stamp] pairs")
        try:
            ms = np.array([e[0] for e in entries], dtype=np.float64)
            stamps = [e[1] for e in entries]
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ResultError(f"{what}: want a list of [ms, stamp] pairs") from e
        yield name, ms, stamps_to_posix_ns(stamps, what)
