"""The architectures both stages build: timm backbones with an FPN neck, and a plain ViT's simple pyramid.

Pure modules, no file I/O: rebuilding one from a checkpoint's metadata is
:meth:`Encoder.from_metadata`, and putting weights into it is :mod:`densechange.checkpoints`'s work
(``build_encoder("random" | "imagenet" | NAME | PATH | URL)``). Names are imported on first use, so
importing the package does not load timm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from densechange.models.errors import ModelError

if TYPE_CHECKING:
    from densechange.models.encoder import Encoder
    from densechange.models.fpn import FPN, set_fast_top_down, top_down
    from densechange.models.pyramid import SimplePyramid

_LAZY = {
    "Encoder": ".encoder",
    "FPN": ".fpn",
    "top_down": ".fpn",
    "set_fast_top_down": ".fpn",
    "SimplePyramid": ".pyramid",
}

__all__ = ["ModelError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
