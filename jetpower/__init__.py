"""jetpower: power and per-layer runtime of neural-network inference on NVIDIA Jetson boards."""

from jetpower.errors import (
    JetpowerError,
    PlanError,
    SamplerError,
    SensorError,
    UploadError,
    UsageError,
    WorkerError,
)


def _version() -> str:
    """The version pyproject.toml gives (its one definition), from the installed metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jetpower")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "JetpowerError",
    "PlanError",
    "SamplerError",
    "SensorError",
    "UploadError",
    "UsageError",
    "WorkerError",
    "__version__",
]
