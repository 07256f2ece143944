"""The one error type of the ``datasets`` package.

A dataset problem is a problem with the user's files, not with the code, so every error names the
file or folder at fault and says how to fix it. ``DatasetError`` subclasses ``ValueError`` so that
callers that already catch bad-value errors keep working.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError", "format_names"]


class DatasetError(ValueError):
    """A dataset on disk (or an argument describing it) cannot be used as given."""


def format_names(names: list[str] | list[Path], limit: int = 5) -> str:
    """Short human list of file names: the first ``limit`` and a count of the rest."""
    shown = ", ".join(str(n) for n in names[:limit])
    rest = len(names) - limit
    return f"{shown} (and {rest} more)" if rest > 0 else shown
