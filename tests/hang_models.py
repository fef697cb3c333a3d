"""Model factories that misbehave, for the campaign fault tests (``hang_models:<factory>``).

Importable when ``tests/`` is on ``PYTHONPATH`` of the supervisor (the worker inherits it).
"""

from __future__ import annotations

import os
import sys
import time


def _preflight() -> bool:
    """True in preflight's check (``python -m jetpower.worker.check``), which calls each factory
    once: these factories behave there, and misbehave only in the worker, as a model does that
    loads but runs out of memory when benchmarked."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec is not None and spec.name == "jetpower.worker.check"


def _small() -> object:
    from torch import nn

    return nn.Identity()


def hangs() -> object:
    """Never returns: the worker hangs in its load phase until it is stopped."""
    if _preflight():
        return _small()
    while True:
        time.sleep(60)


def exits_1() -> object:
    """The worker process disappears with status 1, without a word on its progress pipe."""
    if _preflight():
        return _small()
    os._exit(1)


def raises() -> object:
    """A factory that fails with an exception the worker reports."""
    if _preflight():
        return _small()
    raise RuntimeError("deliberate factory failure")


def loud() -> object:
    """Writes a 200 kB line without a newline to stderr (a progress bar redrawing with ``\\r``
    does the same), then loads a small model that benchmarks normally."""
    if not _preflight():
        sys.stderr.write("\r".join(["progress " + "#" * 90] * 2000))
        sys.stderr.flush()
    return _small()
