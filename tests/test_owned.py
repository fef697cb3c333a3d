"""Children owned on every path, with real processes: stderr lines of any length, closing that
survives repeated cancellation, ``sample`` and ``run`` under SIGTERM and SIGKILL leaving no process
and no ring or simulated-tree directory behind (stale ones removed at the next start)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import structlog

from jetpower._fs import OWNER_FILE
from jetpower._process import LINE_CHARS, SECRET_ENV, child
from jetpower.acquire.process import SHM
from tests.campaign import (
    REPO,
    Live,
    assert_no_orphans,
    env,
    jp,
    log_events,
    manifest,
    processes_mentioning,
    wait_child,
    write_plan,
)


def owned_dirs(pid: int) -> list[Path]:
    """The jetpower ring and simulated-tree directories whose recorded owner is ``pid``."""
    found = []
    for base in {Path(SHM), Path(tempfile.gettempdir())}:
        for d in base.glob("jetpower-*"):
            try:
                owner = (d / OWNER_FILE).read_text().split()[0]
            except (OSError, IndexError):
                continue
            if owner == str(pid):
                found.append(d)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(_alive, pids)):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


# -- child() at the asyncio level -------------------------------------------------------------


def test_child_stderr_line_of_any_length() -> None:
    """A 200 kB stderr line without a newline, then short ones: nothing raises, each line is
    logged once (the long one cut, with its length), the child is reaped."""
    code = ("import sys; sys.stderr.write('x' * 200_000); sys.stderr.write('\\nshort line\\n'); "
            "sys.stderr.write('y' * 100_000)")

    async def main() -> int | None:
        async with child([sys.executable, "-c", code], name="loud") as proc:
            await proc.wait()
        return proc.returncode

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(main()) == 0
    lines = [e for e in logs if e["event"] == "child_stderr"]
    assert [(e["line"][:5], len(e["line"]), e.get("cut_from_bytes")) for e in lines] == [
        ("xxxxx", LINE_CHARS, 200_000), ("short", 10, None), ("yyyyy", LINE_CHARS, 100_000)]


def test_close_survives_repeated_cancellation() -> None:
    """A child that ignores SIGTERM; its owner is cancelled again and again while closing: the
    owner ends (cancelled) only once the child is killed and reaped, never before."""
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)")
    seen: dict[str, object] = {}

    async def owner() -> None:
        async with child([sys.executable, "-c", code], name="stubborn", grace=1.0,
                         stdout=asyncio.subprocess.PIPE) as proc:
            seen["pid"] = proc.pid
            seen["proc"] = proc
            assert proc.stdout is not None
            await proc.stdout.readline()
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.ensure_future(owner())
        while "pid" not in seen:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        task.cancel()
        for _ in range(8):  # cancelled again and again during the 1 s grace
            await asyncio.sleep(0.05)
            assert not task.done(), "the owner returned before its child was reaped"
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen["waited"] = time.monotonic() - t0

    asyncio.run(main())
    proc = seen["proc"]
    assert isinstance(proc, asyncio.subprocess.Process)
    assert proc.returncode == -signal.SIGKILL
    assert float(seen["waited"]) >= 0.9  # type: ignore[arg-type]
    assert not Path(f"/proc/{seen['pid']}").exists(), "the child was not reaped"


def test_children_get_no_upload_token() -> None:
    """The token is not in a child's environment unless asked for (the user's own command)."""
    code = f"import os, sys; sys.stdout.write(repr([os.environ.get(n) for n in {SECRET_ENV!r}]))"

    async def main(secrets: bool) -> bytes:
        e = {**os.environ, **dict.fromkeys(SECRET_ENV, "s3cret-value")}
        async with child([sys.executable, "-c", code], name="envcheck", env=e, secrets=secrets,
                         stdout=asyncio.subprocess.PIPE) as proc:
            assert proc.stdout is not None
            return await proc.stdout.read()

    assert b"s3cret" not in asyncio.run(main(False))
    assert asyncio.run(main(True)).count(b"s3cret-value") == len(SECRET_ENV)


# -- sample ------------------------------------------------------------------------------------


def _sample(out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "jetpower", "sample", "--simulate",
                             "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)


def _sample_children(pid: int) -> dict[str, int]:
    return {name: wait_child(pid, marker) for name, marker in
            (("command", "jp-owned-marker"), ("sampler", "jetpower.sampler"),
             ("simulator", "jetpower.sensors.simulate"))}


SLEEPER = ["--", sys.executable, "-c", "import time; time.sleep(60)  # jp-owned-marker"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sample_signal_stops_flushes_and_exits_with_it(tmp_path: Path, sig: int) -> None:
    """SIGTERM/SIGINT to `sample -- CMD`: the command is stopped and reaped, the summary is
    written and marked interrupted, the ring and the simulated tree are removed, and the exit
    status is the signal."""
    out = tmp_path / "out"
    p = _sample(out, *SLEEPER)
    try:
        kids = _sample_children(p.pid)
        assert len(owned_dirs(p.pid)) == 2  # the ring directory and the simulated tree
        time.sleep(0.5)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=15)
    finally:
        p.kill()
    assert p.returncode == -sig, stderr
    assert "Traceback" not in stderr
    assert not _wait_gone(list(kids.values()), 2), "children left running"
    assert owned_dirs(p.pid) == []
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["interrupted_by"] == sig
    assert s["samples"] > 100 and s["exit_status"] == 128 + signal.SIGTERM
    assert "INTERRUPTED" in stdout
    rows = (out / "samples.csv").read_text()
    assert rows.endswith("\n") and len(rows.splitlines()) >= s["samples"] + 2


def test_sample_sigkill_leaves_nothing_after_next_start(tmp_path: Path) -> None:
    """SIGKILL to `sample -- CMD`: the command, sampler and simulator end themselves; the
    directories it could not remove are removed by the next `sample`, which leaves none."""
    p = _sample(tmp_path / "a", *SLEEPER)
    try:
        kids = _sample_children(p.pid)
        left = owned_dirs(p.pid)
        assert len(left) == 2
        p.kill()
        p.wait(5)
    finally:
        p.kill()
    assert not _wait_gone(list(kids.values())), "children outlived a SIGKILLed sample"
    # (another jetpower starting meanwhile on this machine may already have removed them)
    q = _sample(tmp_path / "b", "--seconds", "0.5")
    _, stderr = q.communicate(timeout=30)
    assert q.returncode == 0, stderr
    assert not any(d.exists() for d in left), "stale directories of a dead owner kept"
    assert owned_dirs(q.pid) == []


# -- run ---------------------------------------------------------------------------------------


def _run_dirs(live: Live) -> list[Path]:
    live.wait_event("sampler_started")
    dirs = owned_dirs(live.proc.pid)
    assert len(dirs) == 2
    return dirs


def test_run_sigterm_removes_its_directories(tmp_path: Path) -> None:
    """SIGTERM to `run` mid-benchmark: no orphans and no ring or simulated tree left."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["lenet"], idle=0.5, cooldown=0.2), d)
    try:
        dirs = _run_dirs(live)
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        live.proc.send_signal(signal.SIGTERM)
        assert live.finish(timeout=10) == -signal.SIGTERM, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    assert not any(x.exists() for x in dirs)
    assert manifest(d)["status"] == "interrupted"


def test_run_sigkill_directories_removed_at_next_start(tmp_path: Path) -> None:
    """SIGKILL to `run`: its children end themselves; its ring and simulated tree are removed
    when the next run starts (their owner is dead), and that run leaves none of its own."""
    d = tmp_path / "result"
    plan = write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 60}'],
                      idle=0.5, cooldown=0.2)
    live = Live(plan, d)
    try:
        dirs = _run_dirs(live)
        live.wait_event("model_started")
        wait_child(live.proc.pid, "jetpower.worker")
        live.proc.kill()
        live.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and processes_mentioning(str(d), *map(str, dirs)):
            time.sleep(0.1)
    finally:
        live.kill()
    assert_no_orphans(live)
    nxt = Live(write_plan(tmp_path, ["lenet"], idle=0.3, cooldown=0.1), tmp_path / "second")
    try:
        nxt.wait_event("sampler_started")
        assert not any(x.exists() for x in dirs), "stale directories of a dead run kept"
        assert nxt.finish() == 0, nxt.stderr
    finally:
        nxt.kill()
    assert owned_dirs(nxt.proc.pid) == []


@pytest.mark.torch
def test_model_writing_a_200kb_stderr_line(tmp_path: Path) -> None:
    """A model whose code writes a 200 kB line without a newline to stderr: the campaign
    completes (exit 0, model done), the line is in the log once, cut."""
    d = tmp_path / "result"
    live = Live(write_plan(tmp_path, ["hang_models:loud"], idle=0.3, cooldown=0.1), d)
    try:
        assert live.finish() == 0, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    assert manifest(d)["models"]["loud"]["status"] == "done"
    cut = [e for e in log_events(d) if e["event"] == "child_stderr" and e.get("cut_from_bytes")]
    assert cut and cut[0]["child"] == "worker" and cut[0]["cut_from_bytes"] == 2000 * 100 - 1


# -- one jetpower per result directory ---------------------------------------------------------


def test_second_run_on_a_live_result_dir_is_refused(tmp_path: Path) -> None:
    """While a run lives, a second `run` and a `--resume` on its directory are refused (exit 2,
    naming the holder's pid) and change nothing; once it has ended, `--resume` may take it."""
    d = tmp_path / "result"
    plan = write_plan(tmp_path, ['{name = "hang_models:hangs", timeout_seconds = 60}'],
                      idle=0.3, cooldown=0.1)
    live = Live(plan, d)
    try:
        live.wait_event("model_started")
        before = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()
                  and p.suffix not in {".csv", ".jsonl", ".log"}}
        for extra in ((), ("--resume",)):
            r = jp("run", str(plan), "--result-dir", str(d), *extra, timeout=60)
            assert r.returncode == 2, (extra, r.stderr)
            assert f"in use by another jetpower (pid {live.proc.pid}" in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
        assert not list(tmp_path.glob("result/*.attempt-*")), "the second run moved work aside"
        assert {p: p.stat().st_mtime_ns for p in before} == before
        live.proc.send_signal(signal.SIGTERM)
        assert live.finish(timeout=15) == -signal.SIGTERM, live.stderr
    finally:
        live.kill()
    assert_no_orphans(live)
    assert not (d / ".jetpower.lock").exists()
    again = Live(write_plan(tmp_path, ["lenet"], idle=0.3, cooldown=0.1), d, "--resume")
    try:
        again.wait_event("run_started")
        assert f"{again.proc.pid} " in (d / ".jetpower.lock").read_text()
        again.proc.send_signal(signal.SIGTERM)
        again.finish(timeout=15)
    finally:
        again.kill()


def test_lock_of_a_sigkilled_holder_is_free() -> None:
    """The kernel frees the lock of a holder that was SIGKILLed: the next taker gets it."""
    from jetpower._fs import DirLock, lock_holder

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        code = ("import sys, time; from pathlib import Path; from jetpower._fs import DirLock; "
                f"DirLock(Path({tmp!r})).acquire(); print('held', flush=True); time.sleep(60)")
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  text=True, env=env(), cwd=REPO)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert lock_holder(d) == str(holder.pid)
            with pytest.raises(Exception, match=f"pid {holder.pid}"):
                DirLock(d).acquire()
            holder.kill()
            holder.wait(5)
        finally:
            holder.kill()
        assert lock_holder(d) is None
        with DirLock(d):
            assert (d / ".jetpower.lock").read_text().split()[0] == str(os.getpid())
        assert not (d / ".jetpower.lock").exists()


# -- no symlink followed out of the result directory -------------------------------------------


@pytest.mark.slow
def test_resume_follows_no_planted_symlink(tmp_path: Path) -> None:
    """--resume over planted links: a run.log.jsonl link is refused (exit 2, nothing written
    through it); a dangling link where the next samples file would go is passed over (the
    samples go to the next free name); nothing outside the result directory is written.  The
    torn last line of the log and row of the samples file are dropped and said, and `report`
    reads the resumed result."""
    d = tmp_path / "result"
    plan = write_plan(tmp_path, ["lenet"], idle=0.3, cooldown=0.1)
    live = Live(plan, d)
    try:
        live.wait_event("model_started")
        live.proc.send_signal(signal.SIGTERM)
        live.finish(timeout=15)
    finally:
        live.kill()
    outside = tmp_path / "outside"
    outside.mkdir()
    real_log = d / "run.log.jsonl"
    kept = real_log.read_bytes()
    real_log.unlink()
    (outside / "log").write_text("theirs\n")
    real_log.symlink_to(outside / "log")
    r = jp("run", str(plan), "--result-dir", str(d), "--resume", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "symbolic link" in r.stderr and "Traceback" not in r.stderr
    assert (outside / "log").read_text() == "theirs\n"
    assert manifest(d)["status"] == "interrupted"
    real_log.unlink()
    real_log.write_bytes(kept + b'{"event":"cut sho')  # as a run killed mid-write leaves them
    with (d / "jetpower_samples.csv").open("a") as f:
        f.write("123456,78")
    (d / "jetpower_samples.resume1.csv").symlink_to(outside / "stolen.csv")
    again = Live(plan, d, "--resume")
    try:
        assert again.finish(timeout=90) == 0, again.stderr
    finally:
        again.kill()
    # the torn log line and samples row are dropped and said; the log is JSON lines again
    assert [e["file"] for e in again.named("samples_torn_row")] == ["jetpower_samples.csv"]
    assert again.named("log_torn_line_dropped")
    assert log_events(d)
    rep = jp("report", str(d), "--out", str(tmp_path / "rep"), timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert not (outside / "stolen.csv").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["log"]
    m = manifest(d)
    assert "jetpower_samples.resume2.csv" in m["sampler"]["samples_files"]
    assert "jetpower_samples.resume1.csv" not in m["sampler"]["samples_files"]


def test_stale_removal_asks_the_owner_files_lock(tmp_path: Path) -> None:
    """A directory whose owner file names a pid that means nothing here (another pid namespace
    sharing /dev/shm) is kept while its flock is held, and removed once the holder is dead; one
    without an owner file, or in an older format from another namespace, is never touched."""
    from jetpower._fs import _pid_namespace, remove_stale

    live = tmp_path / "jetpower-test-live"
    live.mkdir()
    (live / OWNER_FILE).write_text(f"999999999 1 {_pid_namespace()} flock\n")
    foreign = tmp_path / "jetpower-test-old"
    foreign.mkdir()
    (foreign / OWNER_FILE).write_text("999999999 1 pid:[1]\n")
    (tmp_path / "jetpower-test-bare").mkdir()
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(live / OWNER_FILE)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert remove_stale(tmp_path, "jetpower-test-") == []
        holder.kill()
        holder.wait(5)
    finally:
        holder.kill()
    assert remove_stale(tmp_path, "jetpower-test-") == [live]
    assert foreign.exists() and (tmp_path / "jetpower-test-bare").exists()
