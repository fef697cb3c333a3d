"""The boundary to the ``dagshub`` client: the only module that imports it.

Everything here is a thin layer over the vendor's public classes (``dagshub.upload.Repo``,
``dagshub.common.api.repo.RepoAPI``, ``dagshub.common.api.user.UserAPI``) that

- authenticates every request with one :class:`httpx.Auth` we own, built from the token we were
  given, so the client never consults its token cache and never starts its interactive OAuth flow;
- records the HTTP status of the last response, because the client's exceptions often do not carry
  it, and the caller must tell a transient failure (5xx, 408, 429, a dropped connection) from one
  that retrying cannot fix (401, 403, 404, a rejected request);
- turns every vendor exception into :class:`CallFailed`, whose text has the token replaced, raised
  outside the ``except`` block so that no vendor exception (nor its traceback) is chained to it.

The token is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it: structlog's
``dict_tracebacks`` renders the local variables of every frame of a logged traceback, so the token
must never be a plain string in a local variable of ours.

Endpoints the client calls (dagshub 0.7): ``GET api/v1/user`` (who the token belongs to),
``GET api/v1/repos/{owner}/{name}`` (repository info, default branch, permissions),
``GET .../branches/{branch}`` (tip of the branch), ``PUT .../content/{branch}/{dir}`` (multipart
upload, form field ``versioning=dvc``), ``GET .../content/{revision}/{path}`` (listing) and
``GET .../raw/{revision}/{path}`` (file content).
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import urllib.parse
from collections.abc import Callable, Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

import httpx
import tenacity
from dagshub.common import config as _vendor_config
from dagshub.common.api.repo import PathNotFoundError, RepoAPI, RepoNotFoundError
from dagshub.common.api.user import UserAPI
from dagshub.upload import Repo

from jetpower.log import get_logger

T = TypeVar("T")

#: statuses after which the same request may well succeed
_TRANSIENT_STATUS = frozenset({408, 425, 429})

# The client prints progress bars and messages on stdout through rich unless told to be quiet;
# stdout carries our JSON log lines. Analytics would fetch a token through the token cache.
_vendor_config.quiet = True
_vendor_config.disable_analytics = True


def _open_nofollow(path: Path) -> BinaryIO:
    """``path`` opened for reading, refusing a symbolic link (one planted after the listing)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


class Secret:
    """A token that never shows itself: not in ``repr`` (tracebacks with locals), not in ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the token replaced by ``***``: as it is, and as
        ``repr``, JSON and URL quoting spell it (a client's error may show any of them)."""
        if not self._value:
            return text
        forms = {self._value, repr(self._value)[1:-1], json.dumps(self._value)[1:-1],
                 urllib.parse.quote(self._value, safe="")}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


class Kind(enum.Enum):
    """What a failed call means for the caller."""

    TRANSIENT = "transient"  # worth retrying
    AUTH = "auth"  # 401: the token is not accepted
    FORBIDDEN = "forbidden"  # 403: accepted, but may not do this
    NOT_FOUND = "not_found"  # 404
    REJECTED = "rejected"  # any other refusal or an unexpected answer


class CallFailed(Exception):
    """A call through the client failed; ``detail`` is already free of the token."""

    def __init__(self, kind: Kind, status: int | None, detail: str) -> None:
        self.kind = kind
        self.status = status
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True)
class RemoteFile:
    """A file in the repository, as the content listing describes it."""

    path: str  # from the repository root, POSIX
    size: int  # bytes; 0 where the server did not say


@dataclass(frozen=True)
class RepoAccess:
    user: str
    default_branch: str
    can_push: bool | None  # None: the server did not report permissions


class _BearerAuth(httpx.Auth):
    """Adds the token to each request and remembers the status of the last response."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self.last_status: int | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._secret.reveal()
        response = yield request
        self.last_status = response.status_code

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class _Repo(Repo):
    """``dagshub.upload.Repo`` on an explicit host, authenticated with our auth object.

    ``Repo`` reads the host from the process-wide client config and builds its auth from a token
    string; we give it both, so two sessions on two hosts cannot disturb each other.
    """

    def __init__(self, owner: str, name: str, *, branch: str, host: str, auth: httpx.Auth) -> None:
        self._jetpower_auth = auth
        super().__init__(owner, name, branch=branch)
        # Repo also picks up DAGSHUB_USER_TOKEN / DAGSHUB_USERNAME from its config; unused here.
        self.token = self.username = self.password = None
        self.host = host
        self._api = RepoAPI(f"{owner}/{name}", host=host, auth=auth)

    @property
    def auth(self) -> httpx.Auth:
        return self._jetpower_auth


class _VendorLogBridge(logging.Handler):
    """Forwards the client's warnings to our log, with every known token redacted."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.secrets: list[Secret] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed vendor record must not break an upload
            text = str(record.msg)
        for secret in self.secrets:
            text = secret.redact(text)
        get_logger().warning("dagshub_client_message", logger=record.name, message=text)


_bridge = _VendorLogBridge()
_vendor_logger = logging.getLogger("dagshub")
_vendor_logger.setLevel(logging.WARNING)
_vendor_logger.addHandler(_bridge)
_vendor_logger.propagate = False  # its records go through the bridge only, never unredacted


class Session:
    """Calls to one repository on one host with one token."""

    def __init__(self, host: str, repo: str, secret: Secret) -> None:
        self.host = host
        self.repo = repo
        self.owner, self.name = repo.split("/")
        self._secret = secret
        if not any(known.reveal() == secret.reveal() for known in _bridge.secrets):
            _bridge.secrets.append(secret)
        self._auth = _BearerAuth(secret)
        self._api = RepoAPI(repo, host=host, auth=self._auth)
        self._repos: dict[str, _Repo] = {}

    # -- the calls ------------------------------------------------------------------------------

    def access(self) -> RepoAccess:
        """Who the token belongs to, the default branch, and whether that user may push."""
        user = self._call(lambda: UserAPI.get_user_from_token(self._auth, host=self.host))
        info = self._call(self._api.get_repo_info)
        perms = info.permissions
        can_push = None if perms is None else bool(perms.get("push") or perms.get("admin"))
        return RepoAccess(user=user.username, default_branch=info.default_branch, can_push=can_push)

    def upload(
        self,
        branch: str,
        directory: str,
        files: Sequence[tuple[str, Path]],
        message: str,
    ) -> None:
        """One commit of ``files`` (path under ``directory``, local path), versioned with DVC.

        The client's own retry (3 s fixed waits on a "server error" answer) is switched off: the
        caller retries every transient failure alike, with its own backoff and log events.
        """
        repo = self._repos.get(branch)
        if repo is None:
            repo = _Repo(self.owner, self.name, branch=branch, host=self.host, auth=self._auth)
            self._repos[branch] = repo
        put: Callable[..., Any] = Repo.upload_files
        retry_with = getattr(put, "retry_with", None)
        if retry_with is not None:
            put = retry_with(stop=tenacity.stop_after_attempt(1), reraise=True)

        def send() -> None:
            with ExitStack() as stack:
                handles: list[tuple[str, BinaryIO]] = [
                    (remote, stack.enter_context(_open_nofollow(local))) for remote, local in files
                ]
                put(
                    repo,
                    handles,
                    directory_path=directory,
                    commit_message=message,
                    versioning="dvc",
                    quiet=True,
                )

        self._call(send)

    def list_files(self, path: str, revision: str | None) -> list[RemoteFile]:
        """Every file at or under ``path`` (recursively); connected storage buckets are skipped."""
        found: list[RemoteFile] = []
        queue = [path]
        while queue:
            here = queue.pop(0)
            entries = self._call(
                functools.partial(self._api.list_path, here, revision, include_size=True)
            )
            for entry in entries:
                if entry.type == "file":
                    found.append(RemoteFile(path=entry.path, size=int(entry.size or 0)))
                elif entry.type == "dir" and entry.versioning != "bucket":
                    queue.append(entry.path)
        return found

    def fetch(self, path: str, revision: str | None) -> bytes:
        """The content of one file."""
        return self._call(lambda: self._api.get_file(path, revision))

    def files_url(self, branch: str, directory: str) -> str:
        return f"{self.host}/{self.repo}/src/{branch}/{PurePosixPath(directory).as_posix()}"

    # -- translation ----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        self._auth.last_status = None
        try:
            return fn()
        except Exception as e:  # every vendor failure is translated here
            failure = self._translate(e)
        raise failure  # outside the except block: nothing of the vendor's is chained

    def _translate(self, e: BaseException) -> CallFailed:
        if isinstance(e, tenacity.RetryError) and e.last_attempt.failed:
            inner = e.last_attempt.exception()
            if inner is not None:
                e = inner
        detail = self._secret.redact(f"{type(e).__name__}: {e}".strip())
        if len(detail) > 500:
            detail = detail[:500] + "..."
        status = self._auth.last_status
        if isinstance(e, httpx.TransportError):  # connect/read/write errors, timeouts, drops
            return CallFailed(Kind.TRANSIENT, None, detail)
        if isinstance(e, RepoNotFoundError | PathNotFoundError):
            status = 404
        return CallFailed(_kind_of(status), status, detail)


def _kind_of(status: int | None) -> Kind:
    """What the HTTP status of a failed call means (``None`` or 2xx: an answer not understood)."""
    if status is None or status < 400:
        return Kind.REJECTED
    named = {401: Kind.AUTH, 403: Kind.FORBIDDEN, 404: Kind.NOT_FOUND}
    if status in named:
        return named[status]
    if status >= 500 or status in _TRANSIENT_STATUS:
        return Kind.TRANSIENT
    return Kind.REJECTED
