"""The per-band input normalisation an encoder is fed, checked in one place.

Every path that pairs statistics with an encoder (the weights' own or the config's, resolved by
:func:`densechange.checkpoints.factory.resolve_normalisation`, the encoder files that record them,
and the SaDL and change models that apply them) goes through :func:`band_statistics`, so the rule
and its message are written once.
"""
from __future__ import annotations

from typing import Sequence

from densechange.models.errors import ModelError

__all__ = ["band_statistics"]


def band_statistics(in_chans: int, mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    """``mean`` and ``std`` as float lists, after checking one value per band and positive stds.

    Raises:
        ModelError: also naming ``data.mean`` / ``data.std`` / ``data.in_chans``, where users set them.
    """
    if len(mean) != in_chans or len(std) != in_chans:
        raise ModelError(f"mean / std have {len(mean)} / {len(std)} values but the encoder takes data.in_chans="
                         f"{in_chans} input bands; give one value per band (data.mean / data.std).")
    if any(v <= 0 for v in std):
        raise ModelError(f"std must be positive for every band (data.std), got {list(std)}.")
    return [float(v) for v in mean], [float(v) for v in std]
