"""Class-balanced point sampling.

For every image and every class, ``n`` points are drawn uniformly (with replacement) among the
pixels of that class inside a region (the overlap of two views). Drawing is inverse-CDF sampling
on the device, batched over images and classes, with uniforms from a seeded CPU generator.
A class with no pixel in the region is reported as invalid so that its points leave every loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from densechange.datasets.transforms.photometric import draws_to_device


@dataclass(frozen=True)
class PointSpec:
    """Which points enter SaDL's loss: ``points_per_class`` per class of ``num_classes``, read by ``sampling``.

    ``sampling`` is ``bilinear`` (sub-pixel feature reads) or ``nearest`` (the reference's integer rule).
    """

    num_classes: int = 2
    points_per_class: int = 16
    sampling: str = "bilinear"


def sample_class_points(
    mask: torch.Tensor,
    region: torch.Tensor,
    num_classes: int,
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pixel centres per class per image.

    Args:
        mask: ``(B, H, W)`` long class ids; negative values (ignore) are never drawn.
        region: ``(B, H, W)`` bool, where points may fall (e.g. the view overlap).
        num_classes: K.
        n: points per class.
    Returns:
        points ``(B, K, n, 2)`` float pixel centres ``(x, y)`` in the mask's frame, and
        valid ``(B, K)`` bool: the class has at least one pixel in the region.
    """
    b, h, w = mask.shape
    classes = torch.arange(num_classes, device=mask.device).view(1, -1, 1, 1)
    # Integer counts keep the draw exactly uniform for any tile size (float32 counts stop at 2**24).
    cdf = ((mask[:, None] == classes) & region[:, None]).reshape(b * num_classes, h * w).cumsum(1)
    total = cdf[:, -1:]
    valid = (total[:, 0] > 0).view(b, num_classes)
    # Absent classes sample uniformly over the tile so shapes stay fixed; they are masked later.
    cdf = torch.where(total > 0, cdf, torch.arange(1, h * w + 1, device=mask.device).expand_as(cdf))
    total = cdf[:, -1:]
    u = draws_to_device(torch.rand(b * num_classes, n, generator=generator, dtype=torch.float64), mask.device)
    target = (u * total).long().clamp_(max=total - 1) + 1  # the k-th pixel of the class, k uniform in 1..total
    idx = torch.searchsorted(cdf, target)
    xy = torch.stack([(idx % w).float() + 0.5, torch.div(idx, w, rounding_mode="floor").float() + 0.5], -1)
    return xy.view(b, num_classes, n, 2), valid
