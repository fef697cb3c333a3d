"""Model factories that misbehave, for the campaign fault tests (``hang_models:<factory>``).

Importable when ``tests/`` is on ``PYTHONPATH`` of the supervisor (the worker inherits it).
"""

from __future__ import annotations

import os
import time


def hangs() -> object:
    """Never returns: the worker hangs in its load phase until it is stopped."""
    while True:
        time.sleep(60)


def exits_1() -> object:
    """The worker process disappears with status 1, without a word on its progress pipe."""
    os._exit(1)


def raises() -> object:
    """A factory that fails with an exception the worker reports."""
    raise RuntimeError("deliberate factory failure")
