"""Errors of the report: a result directory it cannot read, a missing optional dependency."""

from __future__ import annotations

from jetpower.errors import JetpowerError, UsageError

INSTALL_HINT = "pip install 'jetpower[report]'"


class ResultError(UsageError):
    """A result directory, or one of its files, is missing, malformed or of an unknown version."""


class ReportDependencyError(JetpowerError):
    """numpy or matplotlib (the ``jetpower[report]`` extra) is not installed."""

    exit_code = 2
