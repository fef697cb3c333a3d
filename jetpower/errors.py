"""The exceptions jetpower raises.

Every error a user can cause or meet derives from :class:`JetpowerError`; the CLI is the one place
that turns them into a message and an exit status.  Vendor errors (OSError from sysfs, TensorRT,
DagsHub) are translated into these at one boundary with ``raise ... from e``.
"""

from __future__ import annotations

import errno


class JetpowerError(Exception):
    """Base of all errors jetpower reports to its user."""

    #: exit status the CLI uses for this kind of error
    exit_code = 1


class PlanError(JetpowerError):
    """A plan file (or a flag that stands for one of its keys) is invalid."""

    exit_code = 2

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(JetpowerError):
    """A command-line argument or path is unusable (bad flag value, non-empty output dir, ...)."""

    exit_code = 2


class SensorError(JetpowerError):
    """No usable power sensor, an unknown rail, or a sensor that cannot be read."""

    exit_code = 3


class SamplerError(JetpowerError):
    """The sampler process or its ring buffer failed."""

    exit_code = 4


class WorkerError(JetpowerError):
    """A benchmark worker failed or was configured wrongly."""

    exit_code = 5


class UploadError(JetpowerError):
    """Uploading to or downloading from DagsHub failed."""

    exit_code = 6


class StorageError(JetpowerError):
    """The result's storage refused a write: full (ENOSPC, EDQUOT), read-only (EROFS), or not
    permitted (EACCES, EPERM).  Measuring stops; the message names the path and the error."""

    exit_code = 7

    def __init__(self, path: object, error: OSError) -> None:
        self.path = str(path if path is not None else error.filename or "?")
        self.errno = error.errno
        self.strerror = error.strerror or str(error)
        super().__init__(f"cannot write {self.path}: {self.strerror} "
                         f"({errno.errorcode.get(error.errno or 0, 'error')}); measuring stopped")


#: errnos that mean "this storage will not take our data": they end a run with StorageError
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def storage_error(error: BaseException, path: object = None) -> StorageError | None:
    """``error`` as a :class:`StorageError` when it is (or wraps, in exception groups) an
    ``OSError`` of :data:`STORAGE_ERRNOS`; else None."""
    if isinstance(error, StorageError):
        return error
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return StorageError(path if path is not None else error.filename, error)
    for inner in getattr(error, "exceptions", ()) or ():
        if (found := storage_error(inner, path)) is not None:
            return found
    cause = error.__cause__ or error.__context__
    return storage_error(cause, path) if isinstance(cause, OSError) else None

