"""A loopback HTTP server that answers like DagsHub's API, for the calls the dagshub client makes.

It runs in a thread of the test process, on 127.0.0.1 and an ephemeral port, and stops itself after
``lifetime_s`` if a test forgets to.  It keeps repositories in memory (branch -> {path: bytes}),
records every upload request (form fields and files), and can be scripted to fail the next
matching requests with a status, a JSON "server error", or a dropped connection.

Endpoints (those of dagshub 0.7's ``Repo.upload_files``, ``RepoAPI`` and ``UserAPI``):

    GET  /api/v1/user
    GET  /api/v1/repos/{owner}/{name}
    GET  /api/v1/repos/{owner}/{name}/branches/{branch}
    PUT  /api/v1/repos/{owner}/{name}/content/{branch}/{directory}      multipart upload
    GET  /api/v1/repos/{owner}/{name}/content/{revision}/{path}         listing
    GET  /api/v1/repos/{owner}/{name}/raw/{revision}/{path}             file content

Nothing is written to disk and the Authorization header is never stored or printed.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

DROP = -1  # a scripted "status" that closes the connection without answering


@dataclass
class Upload:
    """One PUT to the content endpoint, as the server received it."""

    repo: str
    branch: str
    directory: str
    fields: dict[str, str]
    files: dict[str, bytes]  # path relative to ``directory`` -> content


@dataclass
class FakeRepo:
    default_branch: str = "main"
    can_push: bool = True
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})


class FakeDagsHub:
    """The server; use as a context manager. ``url`` is what DAGSHUB_CLIENT_HOST should be."""

    def __init__(self, token: str, *, lifetime_s: float = 60.0, echo_auth: bool = False) -> None:
        self._token = token
        self.echo_auth = echo_auth  # scripted failures quote the Authorization header back
        self.repos: dict[str, FakeRepo] = {}
        self.uploads: list[Upload] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._script: list[list[Any]] = []  # [method, path fragment, [statuses...]]
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, full_name: str, *, can_push: bool = True) -> FakeRepo:
        repo = FakeRepo(can_push=can_push)
        self.repos[full_name] = repo
        return repo

    def fail(self, method: str, path_fragment: str, *statuses: int) -> None:
        """Answer the next requests whose path contains ``path_fragment`` with ``statuses``."""
        with self._lock:
            self._script.append([method, path_fragment, list(statuses)])

    def count(self, method: str, path_fragment: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_fragment in p)

    def start(self) -> FakeDagsHub:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeDagsHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._thread.join(timeout=5)

    # -- used by the handler --------------------------------------------------------------------

    def _scripted(self, method: str, path: str) -> int | None:
        with self._lock:
            for entry in self._script:
                if entry[0] == method and entry[1] in path and entry[2]:
                    return int(entry[2].pop(0))
        return None

    def _authorized(self, header: str | None) -> bool:
        return header == f"Bearer {self._token}"


def _handler(fake: FakeDagsHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: simple and enough here

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: tests inspect ``fake.requests`` instead."""

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            body = self._read_body()
            path = urlsplit(self.path).path
            status = fake._scripted(method, path)
            if status == DROP:
                fake.requests.append((method, path, 0))
                self.close_connection = True
                self.connection.close()
                return
            if status is not None:
                echo = self.headers.get("Authorization", "") if fake.echo_auth else ""
                if status == 500:
                    payload = {"error": "server error", "details": f"scripted {echo}"}
                    self._send(status, json.dumps(payload).encode(), "application/json", path)
                else:
                    text = f"<html>{status} Service Unavailable {echo}</html>".encode()
                    self._send(status, text, "text/html", path)
                return
            if not fake._authorized(self.headers.get("Authorization")):
                msg = {"message": "token is invalid"}
                self._send(401, json.dumps(msg).encode(), "application/json", path)
                return
            self._route(method, path, body)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes, ctype: str, path: str, **headers: str) -> None:
            fake.requests.append((self.command, path, status))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any, path: str, **headers: str) -> None:
            self._send(status, json.dumps(data).encode(), "application/json", path, **headers)

        def _route(self, method: str, path: str, body: bytes) -> None:
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[:2] != ["api", "v1"]:
                self._json(404, {"message": "not found"}, path)
                return
            rest = parts[2:]
            if method == "GET" and rest == ["user"]:
                self._json(200, _user(), path)
                return
            if len(rest) < 3 or rest[0] != "repos":
                self._json(404, {"message": "not found"}, path)
                return
            name = f"{rest[1]}/{rest[2]}"
            repo = fake.repos.get(name)
            if repo is None:
                self._json(404, {"message": "repository not found"}, path)
                return
            tail = rest[3:]
            if method == "GET" and not tail:
                self._json(200, _repo_info(fake, name, repo), path)
            elif method == "GET" and len(tail) == 2 and tail[0] == "branches":
                if tail[1] in repo.branches:
                    self._json(200, {"name": tail[1], "commit": _commit(repo.heads[tail[1]])}, path)
                else:
                    self._json(404, {"message": "branch not found"}, path)
            elif method == "PUT" and len(tail) >= 2 and tail[0] == "content":
                self._upload(name, repo, tail[1], "/".join(tail[2:]).strip("/"), body, path)
            elif method == "GET" and len(tail) >= 2 and tail[0] in {"content", "raw"}:
                self._read(name, repo, tail[0], tail[1], "/".join(tail[2:]).strip("/"), path)
            else:
                self._json(404, {"message": "not found"}, path)

        def _upload(
            self, name: str, repo: FakeRepo, branch: str, directory: str, body: bytes, path: str
        ) -> None:
            if not repo.can_push:
                self._json(403, {"message": "no write access"}, path)
                return
            fields, files = _multipart(self.headers.get("Content-Type", ""), body)
            target = branch
            if fields.get("commit_choice") == "commit-to-new-branch":
                target = fields["new_branch_name"]
                repo.branches[target] = dict(repo.branches.get(branch, {}))
            if target not in repo.branches:
                self._json(404, {"error": "branch", "details": f"no branch {target}"}, path)
                return
            fake.uploads.append(Upload(name, target, directory, fields, files))
            tree = repo.branches[target]
            for rel, data in files.items():
                tree[f"{directory}/{rel}" if directory else rel] = data
            digest = hashlib.sha1(repr(sorted(tree.items())).encode(), usedforsecurity=False)
            repo.heads[target] = digest.hexdigest()
            self._json(200, {"message": "ok"}, path, ETag=repo.heads[target])

        def _read(
            self, name: str, repo: FakeRepo, kind: str, revision: str, rel: str, path: str
        ) -> None:
            tree = repo.branches.get(revision)
            if tree is None:
                self._json(404, {"message": "revision not found"}, path)
                return
            if kind == "raw":
                if rel in tree:
                    self._send(200, tree[rel], "application/octet-stream", path)
                else:
                    self._json(404, {"message": "file not found"}, path)
                return
            if rel in tree:
                self._json(200, _entry(fake, name, revision, rel, tree), path)
                return
            prefix = f"{rel}/" if rel else ""
            children = sorted(
                {prefix + p[len(prefix) :].split("/")[0] for p in tree if p.startswith(prefix)}
            )
            if not children:
                self._json(404, {"message": "path not found"}, path)
                return
            self._json(200, [_entry(fake, name, revision, c, tree) for c in children], path)

    return Handler


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files (by filename) of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, f"not multipart: {content_type}"
    boundary = b"--" + match.group(1).encode()
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if filename:
            files[filename.group(1)] = data
        elif name:
            fields[name.group(1)] = data.decode()
    return fields, files


def _user() -> dict[str, Any]:
    return {
        "id": 1,
        "login": "tester",
        "full_name": "Test User",
        "avatar_url": None,
        "public_email": None,
        "website": None,
        "company": None,
        "description": None,
        "username": "tester",
    }


def _repo_info(fake: FakeDagsHub, name: str, repo: FakeRepo) -> dict[str, Any]:
    owner = {
        **_user(),
        "login": name.split("/", maxsplit=1)[0],
        "username": name.split("/", maxsplit=1)[0],
    }
    return {
        "id": 7,
        "owner": owner,
        "name": name.split("/")[1],
        "full_name": name,
        "description": "",
        "private": True,
        "fork": False,
        "parent": None,
        "empty": False,
        "mirror": False,
        "size": 0,
        "html_url": f"{fake.url}/{name}",
        "ssh_url": None,
        "clone_url": f"{fake.url}/{name}.git",
        "website": None,
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 0,
        "open_issues_count": 0,
        "default_branch": repo.default_branch,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": {"admin": False, "push": repo.can_push, "pull": True},
    }


def _commit(sha: str) -> dict[str, Any]:
    return {
        "id": sha,
        "message": "commit",
        "url": "",
        "author": None,
        "committer": None,
        "added": None,
        "removed": None,
        "modified": None,
        "timestamp": "2024-01-01T00:00:00Z",
    }


def _entry(
    fake: FakeDagsHub, name: str, revision: str, path: str, tree: dict[str, bytes]
) -> dict[str, Any]:
    is_file = path in tree
    return {
        "path": path,
        "type": "file" if is_file else "dir",
        "size": len(tree[path]) if is_file else 0,
        "hash": hashlib.md5(tree[path], usedforsecurity=False).hexdigest() if is_file else "",
        "versioning": "dvc",
        "download_url": f"{fake.url}/api/v1/repos/{name}/raw/{revision}/{path}",
        "content_url": f"{fake.url}/api/v1/repos/{name}/content/{revision}/{path}",
    }
