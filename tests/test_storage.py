"""Full and read-only storage, with real processes on a real small tmpfs: the run stops with exit
7 and one line naming the path and the error (no traceback), the manifest says ``failed`` where
it can still be written, the samples CSV and the log hold whole rows and lines only."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jetpower.acquire import samples_csv
from tests.campaign import (
    Live,
    assert_no_orphans,
    jp,
    log_events,
    manifest,
    wait_child,
    write_plan,
)

EXIT_STORAGE = 7


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs of our own (skips where mounting is refused: not root, no CAP_SYS_ADMIN)."""
    where = tmp_path / "fs"
    where.mkdir()
    r = _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> Path:
    """Write a file until the file system is full."""
    filler = where / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
        block = b"\0" * (1 << 20)
        while True:
            f.write(block)
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    return filler


def _whole(d: Path) -> None:
    """The samples CSV ends in a whole row and parses; every log line is JSON."""
    text = (d / "jetpower_samples.csv").read_bytes()
    assert text.endswith(b"\n")
    s = samples_csv.read(d / "jetpower_samples.csv")
    assert s.torn == 0 and len(s) > 100
    log_events(d)


def test_disk_full_while_measuring(small_fs: Path, tmp_path: Path) -> None:
    """The disk fills up during a benchmark: exit 7 at once, one line naming the samples file
    and ENOSPC, the manifest ``failed`` (written in the room the run kept in reserve), whole
    rows and lines, no process left; `report` reads what was measured."""
    d = small_fs / "result"
    live = Live(write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 60}'],
                           idle=0.5, cooldown=0.2), d)
    try:
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        _fill(small_fs)
        code = live.finish(timeout=20)
    finally:
        live.kill()
    assert code == EXIT_STORAGE, live.stderr
    assert_no_orphans(live)
    err = [ln for ln in live.stderr.splitlines() if ln.startswith("jetpower run: error:")]
    assert len(err) == 1 and "No space left on device (ENOSPC)" in err[0], live.stderr
    assert str(d) in err[0]
    assert "Traceback" not in live.stderr
    m = manifest(d)
    assert m["status"] == "failed" and "ENOSPC" in m["reason"]
    assert m["models"]["hangs"]["status"] == "failed"
    _whole(d)
    (small_fs / "filler").unlink()
    r = jp("report", str(d), "--out", str(tmp_path / "report"), timeout=120)
    assert r.returncode == 0, r.stderr


def test_read_only_result_dir(small_fs: Path, tmp_path: Path) -> None:
    """The result directory turns read-only during a run (a read-only bind mount over it), or,
    where the kernel refuses that with files open, before a --resume: exit 7, one line naming
    the path and EROFS, no traceback, whole rows."""
    d = small_fs / "result"
    plan = write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 60}'],
                      idle=0.5, cooldown=0.2)
    live = Live(plan, d)
    mounted = False
    try:
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        assert _mount("--bind", str(d), str(d)).returncode == 0
        mounted = True
        ro = _mount("-o", "remount,bind,ro", str(d))
        if ro.returncode == 0:
            code = live.finish(timeout=20)
            assert code == EXIT_STORAGE, live.stderr
            assert "Read-only file system (EROFS)" in live.stderr, live.stderr
            assert "Traceback" not in live.stderr
        else:  # busy: stop it, then resume on a read-only directory
            live.proc.terminate()
            live.finish(timeout=20)
            assert _mount("-o", "remount,bind,ro", str(d)).returncode == 0
    finally:
        live.kill()
    assert_no_orphans(live)
    try:
        before = sorted(p.name for p in d.iterdir())
        r = jp("run", str(plan), "--result-dir", str(d), "--resume", timeout=60)
        assert r.returncode in (2, EXIT_STORAGE), r.stderr
        assert "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
        assert lines and str(d) in r.stderr, r.stderr
        assert "Read-only file system" in r.stderr or "not writable" in r.stderr, r.stderr
        assert sorted(p.name for p in d.iterdir()) == before
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], check=False)
    _whole(d)


def test_torn_rows_dropped_and_said(tmp_path: Path) -> None:
    """A log whose last line was cut (a run killed mid-write): the next writer drops the cut
    line and says so, so the log stays JSON lines; a samples file's cut last row is dropped by
    its reader, which counts it."""
    import structlog

    from jetpower.log import configure_logging, log_to_file

    log = tmp_path / "run.log.jsonl"
    log.write_text('{"event":"a"}\n{"event":"b","cut')
    configure_logging(json_lines=True, stream=open(os.devnull, "w"))  # noqa: SIM115
    try:
        log_to_file(log)
        structlog.get_logger().info("after")
        log_to_file(None)
    finally:
        structlog.reset_defaults()
    events = [__import__("json").loads(ln)["event"] for ln in log.read_text().splitlines()]
    assert events == ["a", "log_torn_line_dropped", "after"]
    csv = tmp_path / "s.csv"
    csv.write_text("# jetpower-samples v1\nt_ns,total_uW\n1,5\n2,6\n3,")
    s = samples_csv.read(csv)
    assert s.torn == 1 and s.t_ns.tolist() == [1, 2]


def test_row_file_undoes_a_failed_write(small_fs: Path) -> None:
    """A samples write that the disk cannot take leaves the file at its last whole row."""
    import asyncio

    from jetpower.errors import StorageError

    path = small_fs / "s.csv"
    rows = samples_csv.RowFile(path)

    async def go() -> None:
        await rows.write("# jetpower-samples v1\nt_ns,total_uW\n")
        await rows.write("1,5\n")
        _fill(small_fs)
        with pytest.raises(StorageError) as info:
            await rows.write("".join(f"{k},5\n" for k in range(2, 200_000)))
        assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
        await rows.close()

    asyncio.run(go())
    assert path.read_text() == "# jetpower-samples v1\nt_ns,total_uW\n1,5\n"
