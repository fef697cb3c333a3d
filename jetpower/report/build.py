"""``build_report``: load, analyse, draw and write a report directory.

Output directory rule: a missing or empty directory is used; a directory holding a previous
report (``jetpower_report.json``, format ``jetpower.report`` v1 or v2) is refreshed: the files
that report listed are removed, other files are left alone; any other non-empty directory is
refused (:class:`ResultError`), so a report never overwrites data. A directory under /proc, /sys
or /dev, or one that cannot be created, is refused before anything is read.

``jetpower_report.json`` (v2): ``files``, ``tables`` (each CSV's format and version) and
``numbers`` (every figure, see :mod:`jetpower.report.numbers`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from jetpower.report._errors import ResultError
from jetpower.report.analyse import Report, analyse
from jetpower.report.attribution import MIN_LAYER_SAMPLES
from jetpower.report.html import render_html
from jetpower.report.load import load_result
from jetpower.report.numbers import report_numbers
from jetpower.report.plots import TOP_N, campaign_trace, idle_histogram, layer_bars
from jetpower.report.render import CSV_VERSION, TABLE_FORMATS, render_markdown, write_tables

MARKER = "jetpower_report.json"
MARKER_FORMAT = "jetpower.report"
MARKER_VERSION = 2  # 2: numbers and tables added
#: versions of a previous report this one may refresh
REFRESHABLE = (1, 2)
PLOTS = "plots"
HTML = "report.html"


@dataclass
class BuildResult:
    """What :func:`build_report` made, and how long each stage took (s)."""

    report: Report
    out: Path
    files: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)


def _check_place(out: Path) -> None:
    real = Path(os.path.realpath(out))
    for pseudo in ("/proc", "/sys", "/dev"):
        if real == Path(pseudo) or Path(pseudo) in real.parents:
            raise ResultError(f"{out}: is under {pseudo}, which is not storage; choose another "
                              "--out")
    probe = out.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ResultError(f"{out}: cannot be created: {probe} is not a writable directory")


def _previous_report(out: Path) -> dict[str, object] | None:
    """None for a missing or empty ``out``; the previous report's marker; else ResultError."""
    _check_place(out)
    if out.exists() and not out.is_dir():
        raise ResultError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        try:
            prev = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = None
        if not isinstance(prev, dict) or prev.get("format") != MARKER_FORMAT:
            raise ResultError(
                f"{out}: not empty and not a previous jetpower report; choose another --out"
            )
        if prev.get("version") not in REFRESHABLE:
            raise ResultError(f"{out}: a report of unknown version {prev.get('version')!r}")
        return prev
    return None


def prepare_out(out: Path) -> None:
    """Make ``out`` ready for a report, or raise :class:`ResultError` (see module doc)."""
    prev = _previous_report(out)
    plots = out / PLOTS
    if prev is not None:
        # Nothing is resolved and no link is followed: a planted ``plots`` link (or a listed
        # name that is a link) is removed itself, never what it points to.
        if plots.is_symlink():
            plots.unlink()
        files = prev.get("files")
        for rel in [*(files if isinstance(files, list) else []), MARKER]:
            if (own := _own_file(out, str(rel))) is not None:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    own.unlink()
        if plots.is_dir():
            for p in plots.iterdir():  # links in our plots/ are not data: never write through
                if p.is_symlink():
                    p.unlink()
            if not any(plots.iterdir()):
                plots.rmdir()
    plots.mkdir(parents=True, exist_ok=True)


def _own_file(out: Path, rel: str) -> Path | None:
    """``out/rel`` when ``rel`` names a file a report writes (``NAME`` or ``plots/NAME``)."""
    parts = PurePosixPath(rel).parts
    shaped = len(parts) == 1 or (len(parts) == 2 and parts[0] == PLOTS)
    if shaped and not any(x in {"", ".", "..", "/"} for x in parts):
        return out.joinpath(*parts)
    return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def build_report(
    result_dir: str | Path,
    out: str | Path | None = None,
    *,
    min_layer_samples: int = MIN_LAYER_SAMPLES,
    top_n: int = TOP_N,
) -> BuildResult:
    """Write report.md, models.csv, layers.csv and plots/*.png for ``result_dir`` into ``out``.

    ``out`` defaults to ``result_dir/report``.
    """
    root = Path(result_dir)
    if not root.is_dir():
        raise ResultError(f"{root}: not a directory")
    dest = Path(out) if out is not None else root / "report"
    _previous_report(dest)  # refuse a bad --out before a long load
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_result(root)
    prepare_out(dest)
    t1 = time.perf_counter()
    rep = analyse(data, min_layer_samples)
    t2 = time.perf_counter()
    files: list[Path] = []
    images: dict[str, str] = {}
    pdir = dest / PLOTS
    files.append(campaign_trace(rep, pdir / "campaign_power.png"))
    images["campaign"] = f"{PLOTS}/campaign_power.png"
    if (h := idle_histogram(rep, pdir / "idle_power_hist.png")) is not None:
        files.append(h)
        images["idle"] = f"{PLOTS}/idle_power_hist.png"
    for mr in rep.models:
        name = f"layers_{_safe(mr.model.name)}.png"
        if (b := layer_bars(mr, pdir / name, top_n, simulated=data.simulated)) is not None:
            files.append(b)
            images[mr.model.name] = f"{PLOTS}/{name}"
    t3 = time.perf_counter()
    files += write_tables(rep, dest)
    md = dest / "report.md"
    md.write_text(render_markdown(rep, images), encoding="utf-8")
    files.append(md)
    page = dest / HTML
    page.write_text(render_html(rep, dest, images), encoding="utf-8")
    files.append(page)
    rel = [str(f.relative_to(dest)) for f in files]
    tables = {name: {"format": fmt, "version": CSV_VERSION} for name, fmt in TABLE_FORMATS.items()}
    (dest / MARKER).write_text(json.dumps({
        "format": MARKER_FORMAT, "version": MARKER_VERSION, "result_dir": str(root.resolve()),
        "simulated": data.simulated, "files": rel, "tables": tables,
        "numbers": report_numbers(rep)}, indent=1), encoding="utf-8")  # fmt: skip
    t4 = time.perf_counter()
    secs.update(load=t1 - t0, attribute=t2 - t1, plot=t3 - t2, write=t4 - t3, total=t4 - t0)
    return BuildResult(rep, dest, files, secs)
