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

__version__ = "0.1.0"

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
