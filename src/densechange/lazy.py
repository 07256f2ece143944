"""Names a package exports but imports only on first use, so that importing it stays cheap.

``densechange weights list`` or a download helper should not load timm and torch's model zoo just
because ``densechange.checkpoints`` was imported; a package lists what it exports and where from, and
:func:`lazy_exports` gives it the module-level ``__getattr__`` and ``__dir__`` that import on demand
(PEP 562).

Example:
    >>> __getattr__, __dir__ = lazy_exports(__name__, {"Encoder": ".encoder"}, ["ModelError"])
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping, Sequence


def lazy_exports(package: str, table: Mapping[str, str], eager: Sequence[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps each lazy name to its relative module."""
    names = sorted([*eager, *table])

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            setattr(sys.modules[package], name, value)  # the next lookup finds it directly
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
