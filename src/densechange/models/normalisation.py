"""The per-band input normalisation an encoder is fed, checked in one place.

Every path that pairs statistics with an encoder (the weights' own or the config's, resolved by
:func:`densechange.checkpoints.factory.resolve_normalisation`, and the SaDL and change models that
apply them) goes through :func:`band_statistics`, so the rule and its message are written once.
"""
from __future__ import annotations

from typing import Sequence

from densechange.models.errors import ModelError

__all__ = ["band_statistics"]


def band_statistics(in_chans: int, mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    """``mean`` and ``std`` as float lists, after checking one value per band and positive stds.

    Raises:
        ModelError: naming ``data.mean`` / ``data.std`` / ``data.in_chans``, where users set them.
    """
    if len(mean) != in_chans or len(std) != in_chans:
        raise ModelError(f"data.mean / data.std have {len(mean)} / {len(std)} values but data.in_chans={in_chans} "
                         "(the encoder's input bands); give one value per band.")
    if any(v <= 0 for v in std):
        raise ModelError(f"data.std must be positive for every band, got {list(std)}.")
    return [float(v) for v in mean], [float(v) for v in std]
