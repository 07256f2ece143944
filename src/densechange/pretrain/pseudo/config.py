"""The ``pseudo`` config section: how pseudo-masks are made, and the one place its values are checked.

:class:`PseudoConfig` is both the schema of ``pseudo.*`` and the settings object that
:func:`densechange.pretrain.pseudo.masks.compute_pseudo_masks` and
:class:`densechange.pretrain.pseudo.refresh.PseudoRefresher` take whole, so a value is checked
once, when the settings are built (``OmegaConf.to_object`` of the section, or the constructor).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from densechange.engine.errors import ConfigError

__all__ = ["PseudoConfig", "ENCODER_STRIDE"]

ENCODER_STRIDE = 32  # the coarsest stride of the encoders: windows and halos on its grid keep the features aligned


@dataclass
class PseudoConfig:
    """Pseudo-masks for ``data.masks=pseudo``: k-means clusters of per-pixel features become the classes."""

    clusters: int = 4  # K, the classes of class-balanced sampling
    refresh_every: int = 0  # recompute from the encoder's features every N epochs (0: colour/texture only)
    window: int = 7  # side of the local mean / std window of the colour-texture features
    pixels_per_image: int = 256  # seeded pixels per image (per window of a larger one) offered to the k-means fit
    max_pixels: Optional[int] = 100_000  # at most this many fitting pixels in all (rank 0 holds this x F floats); null: no limit
    iters: int = 25  # k-means iterations
    batch_size: int = 16  # windows per feature batch
    tile: int = 256  # scenes are featurised and written in windows of tile² (a multiple of 32): memory is flat in the scene size
    halo: int = 32  # context read around each window for the encoder's features (the colour window's own is exact)

    def __post_init__(self) -> None:
        if self.refresh_every < 0:
            raise ConfigError(f"pseudo.refresh_every={self.refresh_every}: expected 0 (never) or a number of epochs.")
        if not 2 <= self.clusters <= 255:
            raise ConfigError(f"pseudo.clusters={self.clusters}: expected 2..255 clusters (uint8 masks).")
        if self.pixels_per_image < 1:
            raise ConfigError(f"pseudo.pixels_per_image={self.pixels_per_image}: expected a positive number.")
        if self.max_pixels is not None and self.max_pixels < self.clusters:
            raise ConfigError(f"pseudo.max_pixels={self.max_pixels}: expected at least pseudo.clusters={self.clusters} "
                              "pixels, or null.")
        if self.tile < ENCODER_STRIDE or self.tile % ENCODER_STRIDE:
            raise ConfigError(f"pseudo.tile={self.tile}: expected a multiple of 32 pixels (the encoder's coarsest stride).")
        if self.halo < 0 or self.halo % ENCODER_STRIDE:
            raise ConfigError(f"pseudo.halo={self.halo}: expected a multiple of 32 pixels, so that encoder windows keep "
                              "the image's stride-32 grid.")
