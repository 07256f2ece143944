"""The distance prior: how the metric branch's distance map guides the segmentation branch.

The distance map ``D`` (``(B, 1, h, w)``, values in ``[0, 2]`` for unit embeddings) is brought to
each decoder level's resolution by area averaging and then

- ``attention``: scales the features, ``F * (1 + D / 2)``, so that locations the metric branch
  finds far apart are amplified (at most x2) and similar ones kept as they are;
- ``concat``: is appended as one more channel for the next convolution to use;
- ``none``: is not used (the ablation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from densechange.engine.errors import ConfigError

PRIORS = ("attention", "concat", "none")


def check_prior(mode: str) -> str:
    if mode not in PRIORS:
        raise ConfigError(f"model.prior is '{mode}'; valid values: {', '.join(PRIORS)}.")
    return mode


def prior_channels(mode: str) -> int:
    """Extra input channels the prior adds to a decoder level."""
    return 1 if check_prior(mode) == "concat" else 0


def resize_distance(distance: torch.Tensor, size: tuple[int, int], ratio: int | None = None) -> torch.Tensor:
    """Distance map at ``size``: area average when coarser, bilinear when finer.

    ``ratio`` is the level's known size ratio (its stride over the distance map's). When the map is
    exactly ``ratio`` times the size, the area average is a pooling with a fixed ``ratio`` kernel:
    the same bins as the adaptive pooling, and a graph that ONNX can run at any input size.
    """
    if tuple(distance.shape[-2:]) == tuple(size):
        return distance
    if ratio and distance.shape[-2] == size[0] * ratio and distance.shape[-1] == size[1] * ratio:
        return F.avg_pool2d(distance, ratio)
    if size[0] <= distance.shape[-2] and size[1] <= distance.shape[-1]:
        return F.adaptive_avg_pool2d(distance, size)
    return F.interpolate(distance, size=size, mode="bilinear", align_corners=False)


def apply_prior(features: torch.Tensor, distance: torch.Tensor | None, mode: str, ratio: int | None = None) -> torch.Tensor:
    """Features ``(B, C, h, w)`` guided by ``distance``; unchanged for ``none`` or without a distance map.

    Returns ``(B, C, h, w)``, or ``(B, C + 1, h, w)`` for ``concat``.
    """
    if check_prior(mode) == "none" or distance is None:
        return features
    d = resize_distance(distance, tuple(features.shape[-2:]), ratio).to(features.dtype)
    if mode == "attention":
        return features * (1 + d / 2)
    return torch.cat([features, d], dim=1)  # concat
