"""The architectures both stages build: timm backbones with an FPN neck, and a plain ViT's simple pyramid.

:class:`BandMeans` (the bands themselves as a pyramid) is the probes' no-learning baseline.

Pure modules, no file I/O: rebuilding one from a checkpoint's metadata is
:meth:`Encoder.from_metadata`, and putting weights into it is :mod:`densechange.checkpoints`'s work
(``build_encoder("random" | "imagenet" | NAME | PATH | URL)``). Names are imported on first use, so
importing the package does not load timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from densechange.models.errors import ModelError
from densechange.lazy import lazy_exports

if TYPE_CHECKING:
    from densechange.models.bands import BandMeans
    from densechange.models.encoder import Encoder
    from densechange.models.fpn import FPN, set_fast_top_down, top_down
    from densechange.models.pyramid import SimplePyramid

_LAZY = {
    "BandMeans": ".bands",
    "Encoder": ".encoder",
    "FPN": ".fpn",
    "top_down": ".fpn",
    "set_fast_top_down": ".fpn",
    "SimplePyramid": ".pyramid",
}

__all__ = ["ModelError", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, ["ModelError"])
