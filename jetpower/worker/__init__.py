"""The benchmark worker: one process per model, ``python -m jetpower.worker --config FILE``.

Nothing here imports torch, torch-tensorrt or tensorrt; the backends do, inside the worker process.
The supervisor needs only :class:`WorkerConfig` (to write the config file) and the exit statuses.
"""

from jetpower.worker.config import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    WorkerConfig,
    WorkerConfigError,
    WorkerRunError,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "WorkerConfig",
    "WorkerConfigError",
    "WorkerRunError",
]
