"""Filesystem habits: atomic writes, never overwriting data, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from jetpower.errors import UsageError, storage_error


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """Write ``path`` through a temporary file beside it: fsync, then rename into place.

    On an exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file under its final name (a SIGKILL leaves only a ``.*.tmp``).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise (storage_error(e, path) or e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (err := storage_error(e, path)) is not None:
            raise err from None  # a full or read-only disk: one line, the path and the error
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_text(path) as f:
        f.write(text)


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 4) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def first_free(candidate: Callable[[int], Path]) -> Path:
    """``candidate(k)`` for the smallest k >= 1 that does not exist yet (never overwrite)."""
    k = 1
    while os.path.lexists(path := candidate(k)):  # a planted (dangling) link is taken too
        k += 1
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def prepare_new_dir(path: Path, what: str = "output directory") -> Path:
    """Make sure ``path`` is a new or empty, writable directory; create it. Never touches data."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {str(path)!r} exists and is not a directory")
        if any(path.iterdir()):
            raise UsageError(
                f"{what} {str(path)!r} is not empty; jetpower never overwrites data: "
                "choose a new directory"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {str(path)!r} is not writable")
        return path
    check_creatable(path, what)
    path.mkdir(parents=True)
    return path


def check_creatable(path: Path, what: str = "directory") -> None:
    """Raise unless ``path`` could be created: its nearest existing parent must be writable."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {what} {str(path)!r}: {str(parent)!r} is not writable")


OWNER_FILE = "owner.pid"


@contextlib.contextmanager
def owned_temp_dir(prefix: str, parent: str | None = None) -> Iterator[Path]:
    """A temporary directory that records its owner, removed on leaving the block.

    The owner holds an ``flock`` on the directory's ``owner.pid`` (pid, start time, pid
    namespace, "flock") for the block: the kernel releases it when the owner dies, however it
    dies, and in every pid namespace alike.  Before the directory is made, directories of the
    same ``prefix`` whose owner is dead (a SIGKILLed run cannot clean up) are removed: see
    :func:`remove_stale`.
    """
    import fcntl

    base = Path(parent or tempfile.gettempdir())
    remove_stale(base, prefix)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as tmp:
        path = Path(tmp)
        fd = os.open(path / OWNER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{os.getpid()} {_start_time(os.getpid())} {_pid_namespace()} "
                         "flock\n".encode())
            yield path
        finally:
            os.close(fd)


def remove_stale(base: Path, prefix: str) -> list[Path]:
    """Remove the directories ``base/prefix*`` whose recorded owner is no longer alive.

    Alive means: the owner file's ``flock`` is held (the kernel frees it when the owner dies).
    A directory without an owner file is left alone (not ours to judge); so is one whose owner
    file names no flock (an older jetpower) unless its pid is of our pid namespace and dead (a
    reused pid is told apart by the start time recorded beside it).
    """
    import fcntl

    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for d in entries:
        if not d.name.startswith(prefix) or d.is_symlink() or not d.is_dir():
            continue
        try:
            fd = os.open(d / OWNER_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fields = os.pread(fd, 200, 0).decode(errors="replace").split()
            if fields[3:4] == ["flock"]:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner lives
            elif (len(fields) < 3 or fields[2] != _pid_namespace()
                  or not fields[0].isdigit() or _alive(int(fields[0]), fields[1])):
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        finally:
            os.close(fd)
    return removed


def _pid_namespace() -> str:
    """This process's pid namespace (``pid:[inode]``), or "" where unknown."""
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where unknown."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    if now and started and now != started:
        return False  # the pid was reused by another process
    try:  # a zombie is dead: it only waits to be reaped
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


LOCK_FILE = ".jetpower.lock"


class DirLock:
    """An exclusive ``flock`` on ``<directory>/.jetpower.lock`` that records its holder's pid.

    The kernel releases it when the holder dies, however it dies, so a lock file left by a
    SIGKILLed run never blocks the next one.  The file is removed on release; a taker checks that
    the file it locked is still the one at the path (another may have removed it meanwhile).
    """

    def __init__(self, directory: Path, what: str = "directory", *, reserve: int = 0) -> None:
        self.path = directory / LOCK_FILE
        self.what = what
        self.reserve = reserve
        self._fd = -1
        self._head = 0

    def acquire(self) -> DirLock:
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644)
            except OSError as e:
                if (err := storage_error(e, self.path)) is not None:
                    raise err from None
                raise UsageError(f"cannot lock {self.what} {str(self.path.parent)!r}: "
                                 f"{self.path.name}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UsageError(in_use_message(self.path.parent, holder, self.what)) from None
            try:
                same = os.fstat(fd).st_ino == self.path.lstat().st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # locked a file its holder removed as we opened it: take the new one
        head = f"{os.getpid()} {_start_time(os.getpid())}\n".encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, head, 0)
            if self.reserve:  # room kept for the last words (the manifest) on a full disk
                with contextlib.suppress(OSError):
                    os.posix_fallocate(fd, len(head), self.reserve)
        except OSError as e:
            os.close(fd)
            raise (storage_error(e, self.path) or e) from None
        self._fd, self._head = fd, len(head)
        return self

    def free_reserve(self) -> bool:
        """Give the reserved room back to the file system; False when there was none."""
        if self._fd < 0 or not self.reserve:
            return False
        self.reserve = 0
        try:
            os.ftruncate(self._fd, self._head)
        except OSError:
            return False
        return True

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
    return text[0] if text and text[0].isdigit() else "unknown"


def in_use_message(directory: Path, holder: str, what: str = "directory") -> str:
    return (f"{what} {str(directory)!r} is in use by another jetpower (pid {holder}, holding "
            f"its {LOCK_FILE}): wait for it to end, or choose another directory")


def lock_holder(directory: Path) -> str | None:
    """The pid (text) of the live process holding ``directory``'s lock, or None if none does."""
    import fcntl

    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        return None
    finally:
        os.close(fd)
