"""The exceptions jetpower raises.

Every error a user can cause or meet derives from :class:`JetpowerError`; the CLI is the one place
that turns them into a message and an exit status.  Vendor errors (OSError from sysfs, TensorRT,
DagsHub) are translated into these at one boundary with ``raise ... from e``.
"""

from __future__ import annotations


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


