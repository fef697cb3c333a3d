"""Fail early, and clearly, when the ``jetpower[report]`` extra is not installed.

Imported first by :mod:`jetpower.report`, before any module that imports numpy or matplotlib.
"""

from __future__ import annotations

import importlib.util

from jetpower.report._errors import INSTALL_HINT, ReportDependencyError


def check() -> None:
    """Raise :class:`ReportDependencyError`, naming the install command, if an extra is missing."""
    missing = [m for m in ("numpy", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        names = " and ".join(missing)
        raise ReportDependencyError(f"the report needs {names}: {INSTALL_HINT}")


check()
