"""Upload to and download from DagsHub through the real ``dagshub`` client and a loopback server.

The server (tests/fake_dagshub.py) runs in a thread of this process; the client talks HTTP to it
exactly as it would to dagshub.com.  HOME and the XDG directories point into tmp_path, so the
client cannot read or write a token cache of the real user.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import traceback
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

pytest.importorskip("dagshub")

from jetpower import upload
from jetpower.errors import UploadError, UsageError
from jetpower.log import configure_logging, get_logger, log_to_file
from tests.fake_dagshub import DROP, FakeDagsHub

TOKEN = "jp-test-token-" + secrets.token_hex(12)
REPO = "lab/jetson-runs"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("DAGSHUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("DAGSHUB_CLIENT_TOKENS_CACHE", str(home / "dagshub-tokens"))
    monkeypatch.setenv("DAGSHUB_DISABLE_ANALYTICS", "1")
    monkeypatch.setenv("DAGSHUB_QUIET", "1")
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", TOKEN)
    return home


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDagsHub]:
    with FakeDagsHub(TOKEN, lifetime_s=30) as fake:
        fake.add_repo(REPO)
        monkeypatch.setenv("DAGSHUB_CLIENT_HOST", fake.url)
        yield fake


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[io.StringIO, Path]]:
    stream = io.StringIO()
    log_file = tmp_path / "run.log.jsonl"
    configure_logging(json_lines=True, stream=stream)
    log_to_file(log_file)
    yield stream, log_file
    log_to_file(None)
    structlog.reset_defaults()


@pytest.fixture
def result_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "run-20240601"
    prof = root / "resnet18" / "trt_profiling"
    prof.mkdir(parents=True)
    (root / "idling_power.json").write_text(
        '{"timestamp": "20240601-120000", "avg_idle_power": 1.5}'
    )
    (root / "resnet18" / "resnet18_power_log.log").write_text("20240601-12:00:00.000001,5000,900\n")
    (root / "resnet18" / "resnet18_tensorrt.json").write_text('{"config": {}}')
    (prof / "trt_layer_latency.json").write_text('{"conv1": [[0.1, "20240601-12:00:01.000000"]]}')
    (root / "samples.bin").write_bytes(bytes(range(256)) * 64 + b"\r\n--\r\n")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _no_sleep(_seconds: float) -> None:
    """The sleep given to the code under test where the delays do not matter."""


def _run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jetpower", *args],
        cwd=tmp_path,
        env=dict(os.environ),  # HOME, XDG_* and DAGSHUB_* as the isolated_env fixture set them
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# -- upload -----------------------------------------------------------------------------------


def test_upload_sends_every_file_with_dvc_versioning(server: FakeDagsHub, result_dir: Path) -> None:
    """Every file of the result directory arrives, bytes intact, under the remote path, as DVC."""
    summary = upload.upload_result(result_dir, REPO, sleep=_no_sleep)
    assert len(server.uploads) == 1
    sent = server.uploads[0]
    assert sent.fields["versioning"] == "dvc"
    assert sent.directory == "run-20240601"
    assert sent.files == _tree(result_dir)
    assert summary.files == 5
    assert summary.bytes == sum(len(b) for b in _tree(result_dir).values())
    assert summary.remote_path == "run-20240601"
    assert summary.url.endswith(f"/{REPO}/src/main/run-20240601")


def test_upload_splits_large_directories_into_batches(
    server: FakeDagsHub, result_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More files than one request may carry go in several commits, none lost."""
    monkeypatch.setattr(upload, "BATCH_FILES", 2)
    summary = upload.upload_result(result_dir, REPO, remote_path="a/b", sleep=_no_sleep)
    assert summary.commits == 3
    received = {rel: data for u in server.uploads for rel, data in u.files.items()}
    assert received == _tree(result_dir)
    assert {u.directory for u in server.uploads} == {"a/b"}


def test_upload_to_a_new_branch_creates_it(server: FakeDagsHub, result_dir: Path) -> None:
    """A branch that does not exist yet is split off the default branch by the upload."""
    upload.upload_result(result_dir, REPO, branch="board-orin", sleep=_no_sleep)
    assert server.uploads[0].fields["commit_choice"] == "commit-to-new-branch"
    assert server.uploads[0].branch == "board-orin"
    assert "run-20240601/idling_power.json" in server.repos[REPO].branches["board-orin"]


def test_transient_failures_are_retried_with_backoff(server: FakeDagsHub, result_dir: Path) -> None:
    """A 503, a 500 "server error" and a dropped connection are retried, doubling the delay."""
    server.fail("PUT", "/content/", 503, 500, DROP)
    delays: list[float] = []
    summary = upload.upload_result(result_dir, REPO, sleep=delays.append, backoff_s=0.5)
    assert delays == [0.5, 1.0, 2.0]
    assert summary.attempts == 4
    assert server.uploads[-1].files == _tree(result_dir)


def test_unauthorized_fails_fast(
    server: FakeDagsHub, result_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 is not retried: the error names DAGSHUB_USER_TOKEN and nothing is sent."""
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "not-the-right-token")
    delays: list[float] = []
    with pytest.raises(UploadError) as info:
        upload.upload_result(result_dir, REPO, sleep=delays.append)
    assert "401" in str(info.value)
    assert "DAGSHUB_USER_TOKEN" in str(info.value)
    assert delays == []
    assert server.count("PUT", "/content/") == 0
    assert info.value.exit_code == 6


def test_exhausted_retries_keep_data_and_say_how_to_retry(
    server: FakeDagsHub, result_dir: Path
) -> None:
    """After the last retry the error gives the exact retry command; local files are untouched."""
    before = _tree(result_dir)
    server.fail("PUT", "/content/", *[502] * 10)
    delays: list[float] = []
    with pytest.raises(UploadError) as info:
        upload.upload_result(result_dir, REPO, retries=2, sleep=delays.append, message="nightly")
    text = str(info.value)
    assert "3 tries" in text
    assert "HTTP 502" in text
    assert (
        f"python -m jetpower upload {result_dir} --repo {REPO} --branch main "
        "--remote-path run-20240601 --message nightly" in text
    )
    assert len(delays) == 2
    assert _tree(result_dir) == before


# -- check_access -----------------------------------------------------------------------------


def test_check_access_passes_for_a_writable_repo(server: FakeDagsHub) -> None:
    """A valid token and a repository its user may push to: no error, and no upload made."""
    upload.check_access(REPO)
    assert server.count("GET", "/api/v1/user") == 1
    assert server.uploads == []


def test_check_access_rejects_a_bad_token_at_once(
    server: FakeDagsHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid token fails the check with a 401 message, with no retry."""
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "expired")
    delays: list[float] = []
    with pytest.raises(UploadError, match="rejected the token"):
        upload.check_access(REPO, sleep=delays.append)
    assert delays == []


def test_check_access_reports_a_missing_repo(server: FakeDagsHub) -> None:
    """A repository that does not exist is named in a 404 message."""
    with pytest.raises(UploadError, match=r"404.*lab/nope"):
        upload.check_access("lab/nope")


def test_check_access_reports_a_read_only_repo(server: FakeDagsHub) -> None:
    """A repository the token's user cannot push to fails the check before any measurement."""
    server.add_repo("other/shared", can_push=False)
    with pytest.raises(UploadError, match="cannot write to other/shared"):
        upload.check_access("other/shared")


def test_check_access_needs_the_token_variable(
    server: FakeDagsHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DAGSHUB_USER_TOKEN the check says so, and never falls into an OAuth flow."""
    monkeypatch.delenv("DAGSHUB_USER_TOKEN")
    with pytest.raises(UploadError, match="DAGSHUB_USER_TOKEN is not set"):
        upload.check_access(REPO)
    assert server.requests == []


def test_check_access_retries_a_flaky_server(server: FakeDagsHub) -> None:
    """A 503 while checking is transient: retried, then the check passes."""
    server.fail("GET", "/api/v1/user", 503)
    delays: list[float] = []
    upload.check_access(REPO, sleep=delays.append)
    assert len(delays) == 1


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the dagshub package the error tells the user to install jetpower[upload]."""
    monkeypatch.delitem(sys.modules, "jetpower.upload._client", raising=False)
    for name in list(sys.modules):
        if name == "dagshub" or name.startswith("dagshub."):
            monkeypatch.setitem(sys.modules, name, None)  # makes `import dagshub...` fail
    with pytest.raises(UploadError, match=r"dagshub.*pip install 'jetpower\[upload\]'"):
        upload.check_access(REPO)


# -- the token stays secret ---------------------------------------------------------------------


def test_token_appears_in_no_output_log_message_or_file(
    server: FakeDagsHub,
    result_dir: Path,
    tmp_path: Path,
    logs: tuple[io.StringIO, Path],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Even when the server echoes the Authorization header in its errors, the token is redacted
    from the exception, its traceback (with locals, as structlog renders it), the log and files."""
    stream, log_file = logs
    server.echo_auth = True
    server.fail("PUT", "/content/", 503, 503, 503)
    with pytest.raises(UploadError) as info:
        upload.upload_result(result_dir, REPO, retries=2, sleep=_no_sleep)
    try:
        raise info.value
    except UploadError:
        get_logger().exception("upload_failed_in_test")
    out, err = capfd.readouterr()
    texts = {
        "message": str(info.value),
        "traceback": "".join(traceback.format_exception(info.value)),
        "stdout": out,
        "stderr": err,
        "log": stream.getvalue(),
        "log file": log_file.read_text(),
    }
    assert "Bearer ***" in texts["log"]  # the echoed header did reach us, redacted
    for where, text in texts.items():
        assert TOKEN not in text, where
    assert '"locals"' in texts["log"]  # locals were rendered, and still no token
    assert _files_containing(tmp_path, TOKEN.encode()) == []


# -- download ---------------------------------------------------------------------------------


def test_download_fetches_the_files_back(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path
) -> None:
    """What was uploaded comes back byte for byte into DEST, nested directories included."""
    upload.upload_result(result_dir, REPO, sleep=_no_sleep)
    dest = tmp_path / "back"
    summary = upload.download_result(REPO, dest, remote_path="run-20240601", sleep=_no_sleep)
    assert _tree(dest) == _tree(result_dir)
    assert summary.files == 5
    assert not any(p.name.startswith(".back.partial") for p in tmp_path.iterdir())


def test_download_refuses_a_non_empty_destination(server: FakeDagsHub, tmp_path: Path) -> None:
    """A DEST that already holds files is a usage error; nothing is overwritten."""
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(UsageError):
        upload.download_result(REPO, dest)
    assert (dest / "keep.txt").read_text() == "mine"


def test_download_of_a_missing_path_leaves_nothing(server: FakeDagsHub, tmp_path: Path) -> None:
    """A remote path that does not exist fails with 404 and creates no DEST."""
    dest = tmp_path / "none"
    with pytest.raises(UploadError, match="404"):
        upload.download_result(REPO, dest, remote_path="no/such/run")
    assert not dest.exists()
    assert list(tmp_path.glob(".none.partial*")) == []


# -- the command line -------------------------------------------------------------------------


def test_cli_upload_and_download_exit_zero(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path
) -> None:
    """`jetpower upload` then `jetpower download` exit 0, log JSON lines, and leak no token."""
    up = _run_cli("upload", str(result_dir), "--repo", REPO, tmp_path=tmp_path)
    assert up.returncode == 0, up.stderr
    events = [json.loads(line)["event"] for line in up.stdout.splitlines()]
    assert "upload_finished" in events
    dest = tmp_path / "fetched"
    down = _run_cli(
        "download", "--repo", REPO, "--remote-path", "run-20240601", str(dest), tmp_path=tmp_path
    )
    assert down.returncode == 0, down.stderr
    assert _tree(dest) == _tree(result_dir)
    for proc in (up, down):
        assert TOKEN not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, TOKEN.encode()) == []


def test_cli_upload_with_a_bad_token_exits_6_without_traceback(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected token exits with status 6 and one clear line on stderr, no traceback."""
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "wrong-" + TOKEN)
    proc = _run_cli("upload", str(result_dir), "--repo", REPO, tmp_path=tmp_path)
    assert proc.returncode == 6
    assert "Traceback" not in proc.stderr
    assert "jetpower upload: error:" in proc.stderr
    assert "DAGSHUB_USER_TOKEN" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr


def test_cli_upload_server_down_exits_6_with_retry_command(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path
) -> None:
    """When the server keeps failing, the CLI exits 6 and prints the command that retries."""
    server.echo_auth = True
    server.fail("PUT", "/content/", 503)
    proc = _run_cli("upload", str(result_dir), "--repo", REPO, "--retries", "0", tmp_path=tmp_path)
    assert proc.returncode == 6
    assert "Traceback" not in proc.stderr
    assert f"python -m jetpower upload {result_dir} --repo {REPO}" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, TOKEN.encode()) == []


# -- the campaign's [upload] section ----------------------------------------------------------


def _upload_plan(tmp_path: Path) -> Path:
    from tests.campaign import write_plan

    plan = write_plan(tmp_path, ["tinycnn"], idle=0.5, cooldown=0.2)
    plan.write_text(plan.read_text() + f'\n[upload]\nenabled = true\nrepo = "{REPO}"\n')
    return plan


@pytest.mark.slow
@pytest.mark.torch
def test_campaign_uploads_its_result_at_the_end(server: FakeDagsHub, tmp_path: Path) -> None:
    """A campaign with [upload] sends every file of its result directory, then exits 0."""
    d = tmp_path / "result"
    proc = _run_cli("run", str(_upload_plan(tmp_path)), "--result-dir", str(d), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line)["event"] for line in proc.stdout.splitlines()]
    assert events.index("run_finished") < events.index("upload_finished")
    sent = {k: v for u in server.uploads for k, v in u.files.items()}
    local = _tree(d)
    assert set(sent) == set(local)
    # the log goes on after the upload (upload_finished); every other file is sent as it is
    assert {k: v for k, v in sent.items() if k != "run.log.jsonl"} == {
        k: v for k, v in local.items() if k != "run.log.jsonl"}
    assert TOKEN not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, TOKEN.encode()) == []


def test_campaign_with_a_bad_token_fails_before_measuring(
    server: FakeDagsHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[upload] with a rejected token: exit 6 before anything is measured or written."""
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "wrong-" + TOKEN)
    d = tmp_path / "result"
    proc = _run_cli("run", str(_upload_plan(tmp_path)), "--result-dir", str(d), tmp_path=tmp_path)
    assert proc.returncode == 6
    assert "DAGSHUB_USER_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    assert not d.exists(), "nothing measured, nothing written"
    assert "sampler_started" not in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("bad", "count"),
                         [("\n", 1), ("\r\n", 2), ("\t", 1), ("\x1b[2J", 1), ("\u00e9", 1)],
                         ids=["LF", "CRLF", "TAB", "ESC", "non-ASCII"])
def test_token_with_control_characters_is_refused_unshown(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    logs: tuple[io.StringIO, Path], capfd: pytest.CaptureFixture[str], bad: str, count: int,
) -> None:
    """A token holding a newline (or another control character) is refused before any request,
    by upload, download and the access check alike; no message, log line or file shows it or a
    part of it, in any spelling (as is, escaped, quoted)."""
    head, tail = "jp-head-" + secrets.token_hex(6), secrets.token_hex(6) + "-tail"
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", head + bad + tail)
    server.echo_auth = True
    messages = []
    for call in (lambda: upload.upload_result(result_dir, REPO, retries=2, sleep=_no_sleep),
                 lambda: upload.check_access(REPO),
                 lambda: upload.download_result(REPO, tmp_path / "dest", sleep=_no_sleep)):
        refused = rf"DAGSHUB_USER_TOKEN holds {count} character"
        with pytest.raises(UploadError, match=refused) as info:
            call()
        messages.append(str(info.value) + "".join(traceback.format_exception(info.value)))
    assert server.requests == [], "a request was made with the refused token"
    proc = _run_cli("upload", str(result_dir), "--repo", REPO, tmp_path=tmp_path)
    assert proc.returncode == 6 and "Traceback" not in proc.stderr
    assert "not shown" in proc.stderr
    out, err = capfd.readouterr()
    stream, log_file = logs
    for text in (*messages, out, err, stream.getvalue(), log_file.read_text(), proc.stdout,
                 proc.stderr):
        assert head not in text and tail not in text
    assert _files_containing(tmp_path, head.encode()) == []
    assert _files_containing(tmp_path, tail.encode()) == []


def test_redaction_covers_escaped_spellings() -> None:
    """The client's redaction replaces the token as it is and as repr, JSON and URL quoting
    spell it."""
    from jetpower.upload._client import Secret

    token = 'ab"c\\d/e'
    s = Secret(token)
    text = f"{token} {token!r} {json.dumps(token)} {urllib.parse.quote(token, safe='')}"
    red = s.redact(text)
    assert "ab" not in red and "d/e" not in red and "d%2Fe" not in red, red


def test_upload_follows_no_symlink_out_of_the_result_dir(
    server: FakeDagsHub, result_dir: Path, tmp_path: Path, logs: tuple[io.StringIO, Path],
) -> None:
    """Planted links to a file and a directory outside the result directory are skipped (with a
    warning naming them); their contents are never sent; the run's lock file is not data."""
    data = _tree(result_dir)
    outside = tmp_path / "private"
    outside.mkdir()
    secret_text = b"outside-" + secrets.token_hex(8).encode()
    (outside / "key.txt").write_bytes(secret_text)
    (result_dir / "resnet18" / "stolen.txt").symlink_to(outside / "key.txt")
    (result_dir / "linked_dir").symlink_to(outside, target_is_directory=True)
    (result_dir / ".jetpower.lock").write_text("1 2\n")
    summary = upload.upload_result(result_dir, REPO, sleep=_no_sleep)
    sent = server.repos[REPO].branches["main"]
    assert all(secret_text not in v for v in sent.values())
    assert sorted(k.split("/", 1)[1] for k in sent) == sorted(data)
    assert summary.files == len(data)
    warned = logs[0].getvalue()
    assert "upload_symlink_skipped" in warned and "stolen.txt" in warned
