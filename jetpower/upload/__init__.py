"""Upload a result directory to DagsHub (DVC versioned) and download one back.

The DagsHub client is the optional extra ``jetpower[upload]``; it is imported only when one of
these functions runs.  The token comes from ``DAGSHUB_USER_TOKEN``, the host from
``DAGSHUB_CLIENT_HOST`` (default ``https://dagshub.com``).  The token is never logged nor put into
an error message: text that came from the client has it replaced by ``***``.

Failures that may pass (HTTP 5xx, 408, 429, connection errors, timeouts) are retried with
exponential backoff; an invalid token (401), a missing repository (404) or missing write access
(403) fail at once.  A failed upload leaves the local data as it is and says how to retry.
"""

from __future__ import annotations

import functools
import importlib
import os
import posixpath
import shlex
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

from jetpower._fs import LOCK_FILE
from jetpower.errors import UploadError, UsageError
from jetpower.log import get_logger

if TYPE_CHECKING:
    from jetpower.upload._client import CallFailed, Secret, Session

__all__ = [
    "DEFAULT_HOST",
    "HOST_ENV",
    "TOKEN_ENV",
    "DownloadSummary",
    "UploadSummary",
    "check_access",
    "download_result",
    "upload_result",
]

TOKEN_ENV = "DAGSHUB_USER_TOKEN"  # noqa: S105  (the variable's name, not a token)
HOST_ENV = "DAGSHUB_CLIENT_HOST"
DEFAULT_HOST = "https://dagshub.com"
INSTALL_HINT = "pip install 'jetpower[upload]'"

#: one commit carries at most this many files / bytes (the client's own folder upload uses these)
BATCH_FILES = 100
BATCH_BYTES = 100 * 1024 * 1024
#: first retry delay and the longest one, seconds
BACKOFF_S = 2.0
MAX_BACKOFF_S = 60.0

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class UploadSummary:
    repo: str
    host: str
    branch: str
    remote_path: str  # directory in the repository ("" is its root)
    files: int
    bytes: int
    commits: int  # upload requests that succeeded (one commit each, unless nothing changed)
    attempts: int  # upload requests sent, retries included
    url: str  # where to look at the files


@dataclass(frozen=True)
class DownloadSummary:
    repo: str
    host: str
    revision: str  # as asked for; "" means the repository's default branch
    remote_path: str
    dest: Path
    files: int
    bytes: int


# -- public API ---------------------------------------------------------------------------------


def check_access(
    repo: str,
    *,
    host: str | None = None,
    retries: int = 3,
    sleep: Sleep = time.sleep,
    backoff_s: float = BACKOFF_S,
) -> None:
    """Fail fast, before a campaign, unless the token is valid and may write to ``repo``.

    Raises :class:`UploadError` when the client is missing, ``DAGSHUB_USER_TOKEN`` is unset or
    rejected (401), the repository does not exist (404), or the token's user cannot push to it.
    """
    dg = _load_client()
    host = _host(host)
    _check_repo_name(repo)
    session = dg.Session(host, repo, _token(dg))
    try:
        _checked_access(session, retries=retries, sleep=sleep, backoff_s=backoff_s)
    except dg.CallFailed as f:
        raise UploadError(_describe(f, session, what="checking access")) from None


def upload_result(
    result_dir: Path,
    repo: str,
    *,
    branch: str = "main",
    remote_path: str | None = None,
    message: str | None = None,
    retries: int = 5,
    host: str | None = None,
    sleep: Sleep = time.sleep,
    backoff_s: float = BACKOFF_S,
) -> UploadSummary:
    """Upload every file under ``result_dir`` to ``repo`` on ``branch``, versioned with DVC.

    The files go under ``remote_path`` in the repository (default: the directory's own name; ""
    is the repository root).  A branch that does not exist is created from the default branch.
    ``retries`` is how many times one failed request is sent again (so ``retries + 1`` tries).
    On failure the local data is left as it is, and the :class:`UploadError` names the command
    that retries the upload.
    """
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise UploadError(f"result directory {result_dir} does not exist or is not a directory")
    if retries < 0:
        raise UsageError(f"retries must be 0 or more, got {retries}")
    files = _local_files(result_dir)
    if not files:
        raise UploadError(f"result directory {result_dir} holds no files to upload")
    remote = _clean_remote_path(result_dir.resolve().name if remote_path is None else remote_path)
    total = sum(size for _, _, size in files)
    message = message or f"jetpower: upload {result_dir.name} ({len(files)} files)"
    retry_hint = f"The local data in {result_dir} is kept. Retry with:\n  " + _upload_command(
        result_dir, repo, branch, remote, message
    )

    dg = _load_client()
    host = _host(host)
    _check_repo_name(repo)
    session = dg.Session(host, repo, _token(dg))
    log = get_logger().bind(repo=repo, host=host, branch=branch, remote_path=remote)
    log.info("upload_started", result_dir=str(result_dir), files=len(files), bytes=total)
    batches = list(_batches(files))
    attempts = 0
    failure: str | None = None
    try:
        _checked_access(session, retries=retries, sleep=sleep, backoff_s=backoff_s)
        for number, batch in enumerate(batches, start=1):
            pairs = [(rel, path) for rel, path, _ in batch]
            attempts += _retrying(
                functools.partial(session.upload, branch, remote, pairs, message),
                what=f"upload of batch {number}/{len(batches)}",
                retries=retries,
                sleep=sleep,
                backoff_s=backoff_s,
            )[1]
            log.info("upload_batch_sent", batch=number, batches=len(batches), files=len(batch))
    except dg.CallFailed as f:
        failure = _describe(f, session, what="upload")
    if failure is not None:  # raised here, outside the except block: nothing chained to it
        log.error("upload_failed", error=failure)
        raise UploadError(f"{failure}\n{retry_hint}")
    summary = UploadSummary(
        repo=repo,
        host=host,
        branch=branch,
        remote_path=remote,
        files=len(files),
        bytes=total,
        commits=len(batches),
        attempts=attempts,
        url=session.files_url(branch, remote),
    )
    log.info("upload_finished", files=len(files), bytes=total, attempts=attempts, url=summary.url)
    return summary


def download_result(
    repo: str,
    dest: Path,
    *,
    revision: str | None = None,
    remote_path: str | None = None,
    retries: int = 5,
    host: str | None = None,
    sleep: Sleep = time.sleep,
    backoff_s: float = BACKOFF_S,
) -> DownloadSummary:
    """Download the files at ``remote_path`` (default: the whole repository) into ``dest``.

    ``dest`` must not exist or be an empty directory.  Files are fetched into a hidden directory
    beside it, which becomes ``dest`` only when every file has arrived with the size the server
    listed; on failure it is removed.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"download destination {dest} exists and is not an empty directory")
    if retries < 0:
        raise UsageError(f"retries must be 0 or more, got {retries}")
    remote = _clean_remote_path(remote_path or "")
    dg = _load_client()
    host = _host(host)
    _check_repo_name(repo)
    session = dg.Session(host, repo, _token(dg))
    log = get_logger().bind(repo=repo, host=host, revision=revision or "", remote_path=remote)
    log.info("download_started", dest=str(dest))

    def retrying(fn: Callable[[], T], what: str) -> T:
        return _retrying(fn, what=what, retries=retries, sleep=sleep, backoff_s=backoff_s)[0]

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    failure: str | None = None
    total = 0
    listed = []
    try:
        listed = retrying(
            functools.partial(session.list_files, remote, revision), f"listing of {remote!r}"
        )
        if not listed:
            failure = f"nothing to download at /{remote} in {repo} on {host}"
        for entry in listed:
            target = staging / _relative(entry.path, remote)
            data = retrying(functools.partial(session.fetch, entry.path, revision), entry.path)
            if entry.size and len(data) != entry.size:
                failure = f"{entry.path}: got {len(data)} bytes, the listing says {entry.size}"
                break
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            total += len(data)
        if failure is None:
            if dest.exists():
                dest.rmdir()
            staging.rename(dest)
    except dg.CallFailed as f:
        failure = _describe(f, session, what="download")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if failure is not None:
        log.error("download_failed", error=failure)
        raise UploadError(failure)
    log.info("download_finished", dest=str(dest), files=len(listed), bytes=total)
    return DownloadSummary(
        repo=repo,
        host=host,
        revision=revision or "",
        remote_path=remote,
        dest=dest,
        files=len(listed),
        bytes=total,
    )


# -- helpers ------------------------------------------------------------------------------------


def _load_client() -> ModuleType:
    """The client boundary, imported on first use; a clear error where the extra is missing."""
    try:
        dg = importlib.import_module("jetpower.upload._client")
    except ImportError as e:
        missing = e.name or "dagshub"
        raise UploadError(
            f"the DagsHub client is not installed ({missing} cannot be imported); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return dg


def _token(dg: ModuleType) -> Secret:
    raw = os.environ.get(TOKEN_ENV, "")
    _refuse_unprintable(raw.strip(" "))
    secret: Secret = dg.Secret(raw.strip(" "))
    if not secret:
        raise UploadError(
            f"{TOKEN_ENV} is not set: create a token in your DagsHub user settings (Tokens) and "
            f"export it as {TOKEN_ENV} (in a container: docker run -e {TOKEN_ENV} ...)"
        )
    return secret


_CHAR_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}


def _refuse_unprintable(token: str) -> None:
    """Refuse, before it is used, a token with characters a header cannot carry verbatim.

    A newline (a token pasted from a file, ``$(cat token)`` of a file with two lines) would be
    escaped by the HTTP client in its errors (``\\n``), and the escaped form slips past the
    redaction of the token.  The message names the kinds of character and their count, never
    the token nor any part of it.
    """
    bad = [c for c in token if not (c.isascii() and c.isprintable()) or c.isspace()]
    if not bad:
        return
    kinds = sorted({_CHAR_NAMES.get(c, "a control or non-ASCII character") for c in bad})
    raise UploadError(
        f"{TOKEN_ENV} holds {len(bad)} character(s) a token cannot contain ({', '.join(kinds)}); "
        "it was not used, and is not shown: set it again to the token alone, on one line"
    )


def _host(host: str | None) -> str:
    chosen = (host or os.environ.get(HOST_ENV) or DEFAULT_HOST).strip().rstrip("/")
    if not chosen.startswith(("https://", "http://")):
        raise UploadError(f"DagsHub host must be an http(s) URL, got {chosen!r} (from {HOST_ENV})")
    return chosen


def _check_repo_name(repo: str) -> None:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(p in {".", ".."} for p in parts):
        raise UsageError(f"repository must be OWNER/NAME, got {repo!r}")


def _clean_remote_path(path: str) -> str:
    """A POSIX path relative to the repository root; "" for the root itself."""
    clean = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/")
    if ".." in path.replace("\\", "/").split("/"):
        raise UsageError(f"remote path must stay inside the repository, got {path!r}")
    return "" if clean == "." else clean


def _relative(path: str, remote: str) -> str:
    """Where a listed file goes below the destination; refuses anything that would escape it."""
    rel = path.lstrip("/")
    if remote and rel == remote:  # a single file was asked for
        rel = posixpath.basename(rel)
    elif remote:
        if not rel.startswith(remote + "/"):
            raise UploadError(f"the server listed {path!r}, which is not under {remote!r}")
        rel = rel[len(remote) + 1 :]
    parts = rel.split("/")
    if not rel or any(p in {"", ".", ".."} for p in parts):
        raise UploadError(f"the server listed an unusable path {path!r}")
    return rel


def _local_files(root: Path) -> list[tuple[str, Path, int]]:
    """(path relative to ``root`` in POSIX form, path, size) of every regular file, sorted.

    Symbolic links are never followed (a link could send a file from outside the result
    directory): each one is skipped with a warning.  The run's lock file is not data.
    """
    found = []
    skipped = []
    for top, dirs, names in os.walk(root, followlinks=False):
        here = Path(top)
        for name in [*dirs, *names]:
            path = here / name
            if path.is_symlink():
                skipped.append(path.relative_to(root).as_posix())
        for name in names:
            path = here / name
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or (here == root and name == LOCK_FILE):
                continue
            found.append((path.relative_to(root).as_posix(), path, st.st_size))
    for rel in sorted(skipped):
        get_logger().warning("upload_symlink_skipped", path=rel,
                             reason="symbolic links are not followed out of the result directory")
    return sorted(found)


def _batches(files: list[tuple[str, Path, int]]) -> Iterator[list[tuple[str, Path, int]]]:
    batch: list[tuple[str, Path, int]] = []
    size = 0
    for item in files:
        if batch and (len(batch) >= BATCH_FILES or size + item[2] > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item[2]
    if batch:
        yield batch


def _upload_command(result_dir: Path, repo: str, branch: str, remote: str, message: str) -> str:
    words = ["python", "-m", "jetpower", "upload", str(result_dir), "--repo", repo]
    words += ["--branch", branch, "--remote-path", remote, "--message", message]
    return shlex.join(words)


def _checked_access(session: Session, *, retries: int, sleep: Sleep, backoff_s: float) -> None:
    access = _retrying(
        session.access, what="access check", retries=retries, sleep=sleep, backoff_s=backoff_s
    )[0]
    if access.can_push is False:
        raise UploadError(
            f"user {access.user} cannot write to {session.repo} on {session.host}: "
            "ask its owner for write access, or name a repository you own"
        )
    get_logger().info(
        "dagshub_access_checked",
        repo=session.repo,
        host=session.host,
        user=access.user,
        default_branch=access.default_branch,
        can_push=access.can_push,
    )


def _retrying(
    fn: Callable[[], T], *, what: str, retries: int, sleep: Sleep, backoff_s: float
) -> tuple[T, int]:
    """``fn()`` and how many tries it took; transient failures are retried with backoff."""
    from jetpower.upload._client import CallFailed, Kind

    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except CallFailed as f:
            if f.kind is not Kind.TRANSIENT or attempt > retries:
                f.attempts = attempt  # type: ignore[attr-defined]
                raise
            delay = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            get_logger().warning(
                "dagshub_retry",
                what=what,
                attempt=attempt,
                retries=retries,
                delay_s=delay,
                status=f.status,
                reason=f.detail,
            )
        sleep(delay)


def _describe(f: CallFailed, session: Session, *, what: str) -> str:
    """A user's message for a failed call; ``f.detail`` is already free of the token."""
    from jetpower.upload._client import Kind

    where = f"{session.repo} on {session.host}"
    if f.kind is Kind.AUTH:
        return (
            f"{what}: DagsHub at {session.host} rejected the token in {TOKEN_ENV} (HTTP 401); "
            "it is wrong, expired or revoked: create a new one in your DagsHub user settings"
        )
    if f.kind is Kind.FORBIDDEN:
        return f"{what}: the token's user may not write to {where} (HTTP 403): {f.detail}"
    if f.kind is Kind.NOT_FOUND:
        return (
            f"{what}: not found on {session.host} (HTTP 404): repository {session.repo} does not "
            f"exist, the token's user cannot see it, or the path/revision does not exist"
        )
    tries = getattr(f, "attempts", 1)
    if f.kind is Kind.TRANSIENT:
        status = f"HTTP {f.status}" if f.status else "no answer"
        return f"{what} to {where} failed after {tries} tries ({status}): {f.detail}"
    status = f" (HTTP {f.status})" if f.status else ""
    return f"{what}: {where} refused the request{status}: {f.detail}"
