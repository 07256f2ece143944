"""Checkpoint format, weights into an encoder from any source, weights registry and download.

Stands on :mod:`densechange.models` (the architectures it loads weights into) and imports neither
``pretrain``, ``finetune`` nor ``datasets``: both training stages depend on it.
Names are imported on first use, so ``densechange weights list`` and the download helpers start
without loading timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from densechange.checkpoints.errors import CheckpointError
from densechange.lazy import lazy_exports

if TYPE_CHECKING:
    from densechange.checkpoints.factory import build_encoder, build_normalised_encoder, load_encoder, resolve_normalisation, save_encoder
    from densechange.checkpoints.format import FORMAT_VERSION, load_file, read_metadata, save_file

_LAZY = {
    "build_encoder": ".factory",
    "build_normalised_encoder": ".factory",
    "load_encoder": ".factory",
    "save_encoder": ".factory",
    "resolve_normalisation": ".factory",
    "FORMAT_VERSION": ".format",
    "load_file": ".format",
    "read_metadata": ".format",
    "save_file": ".format",
}

__all__ = ["CheckpointError", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, ["CheckpointError"])
