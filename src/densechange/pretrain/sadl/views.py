"""Two-view geometric augmentation with exact correspondence.

Each view is an affine map of the original tile: a random resized crop and optional flips. The
maps are kept, so any original pixel can be located in both views and their overlap is known in
the original frame. Everything runs batched on the training device: one ``affine_grid`` and one
``grid_sample`` warp a whole batch.

Coordinates: pixel ``(x, y)`` in continuous units, pixel ``i`` spanning ``[i, i + 1)``, so its centre
is ``i + 0.5``. Normalised coordinates follow ``align_corners=False``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from densechange.datasets.transforms.photometric import bernoulli, draws_to_device


@dataclass
class ViewAugment:
    """Parameters of SaDL's view augmentation (reference values by default); also the ``aug`` config section."""

    size: int = 256  # side of each view (the random resized crop's output)
    scale: tuple[float, float] = (0.8, 1.0)  # random resized crop: range of the crop's share of the tile's area
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: range of the crop's aspect ratio
    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.5  # probability of a vertical flip
    blur_p: float = 0.5  # probability of a 3x3 Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # range of the blur's standard deviation in pixels
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # colour jitter: brightness, contrast, saturation, hue strengths (torchvision convention)
    jitter_p: float = 0.8  # probability of the colour jitter


@dataclass
class ViewGeometry:
    """Crop boxes and flips of one view for a batch; every field is ``(B,)``.

    The view's pixel ``u`` in ``[0, size)`` shows original ``x = x0 + w * u' / size`` with
    ``u' = size - u`` under a horizontal flip (likewise for ``y``).
    """

    x0: torch.Tensor
    y0: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor
    size: int
    src_w: int
    src_h: int

    def theta(self) -> torch.Tensor:
        """``(B, 2, 3)`` maps from view to original normalised coordinates, for ``affine_grid``."""
        sx = torch.where(self.hflip, -1.0, 1.0).to(self.w)
        sy = torch.where(self.vflip, -1.0, 1.0).to(self.h)
        zero = torch.zeros_like(self.w)
        row0 = torch.stack([sx * self.w / self.src_w, zero, (2 * self.x0 + self.w) / self.src_w - 1], -1)
        row1 = torch.stack([zero, sy * self.h / self.src_h, (2 * self.y0 + self.h) / self.src_h - 1], -1)
        return torch.stack([row0, row1], 1)

    def to_view(self, pts: torch.Tensor) -> torch.Tensor:
        """Original pixel coordinates ``(B, N, 2)`` (x, y) -> this view's pixel coordinates."""
        fx = (pts[..., 0] - self.x0[:, None]) / self.w[:, None]
        fy = (pts[..., 1] - self.y0[:, None]) / self.h[:, None]
        fx = torch.where(self.hflip[:, None], 1 - fx, fx)
        fy = torch.where(self.vflip[:, None], 1 - fy, fy)
        return torch.stack([fx, fy], -1) * self.size

    def box_mask(self) -> torch.Tensor:
        """``(B, H, W)`` bool: original pixels whose centre this view sees."""
        dev = self.w.device
        xs = torch.arange(self.src_w, device=dev, dtype=self.w.dtype) + 0.5
        ys = torch.arange(self.src_h, device=dev, dtype=self.h.dtype) + 0.5
        inx = (xs[None] >= self.x0[:, None]) & (xs[None] < (self.x0 + self.w)[:, None])
        iny = (ys[None] >= self.y0[:, None]) & (ys[None] < (self.y0 + self.h)[:, None])
        return iny[:, :, None] & inx[:, None, :]


def random_resized_boxes(
    n: int,
    src_h: int,
    src_w: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    tries: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop boxes with torchvision's RandomResizedCrop rule, for a batch at once.

    Area fraction from ``scale``, aspect ratio log-uniform in ``ratio``; the first of ``tries``
    draws that fits is kept, and the whole tile is the fall-back. Boxes are continuous (sub-pixel).
    Returns ``x0, y0, w, h`` on the CPU, each ``(n,)``.
    """
    area = src_h * src_w * (torch.rand(n, tries, generator=generator) * (scale[1] - scale[0]) + scale[0])
    log_r = torch.rand(n, tries, generator=generator) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    r = torch.exp(log_r)
    w = torch.sqrt(area * r)
    h = torch.sqrt(area / r)
    fits = (w <= src_w) & (h <= src_h)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    idx = first.clamp(min=0).unsqueeze(1)
    w = torch.where(first >= 0, w.gather(1, idx).squeeze(1), torch.full((n,), float(src_w)))
    h = torch.where(first >= 0, h.gather(1, idx).squeeze(1), torch.full((n,), float(src_h)))
    x0 = torch.rand(n, generator=generator) * (src_w - w)
    y0 = torch.rand(n, generator=generator) * (src_h - h)
    return x0, y0, w, h


def draw_geometry(n: int, src_h: int, src_w: int, aug: ViewAugment, generator: torch.Generator | None,
                  device: torch.device) -> ViewGeometry:
    """Random geometry of one view for ``n`` tiles of ``src_h x src_w``: ``aug``'s crop to ``aug.size`` and its flips."""
    x0, y0, w, h = random_resized_boxes(n, src_h, src_w, aug.scale, aug.ratio, generator)
    hf = bernoulli(n, aug.hflip, generator, device)
    vf = bernoulli(n, aug.vflip, generator, device)
    to = lambda t: draws_to_device(t.float(), device)  # noqa: E731
    return ViewGeometry(to(x0), to(y0), to(w), to(h), hf, vf, aug.size, src_w, src_h)


def warp(image: torch.Tensor, mask: torch.Tensor, geo: ViewGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a batch into a view: bilinear for the image, nearest for the mask.

    Args:
        image: ``(B, C, H, W)`` float.
        mask: ``(B, H, W)`` long class ids (negative = ignore).
    Returns:
        ``(B, C, size, size)`` image and ``(B, size, size)`` mask.
    """
    b, c = image.shape[:2]
    grid = F.affine_grid(geo.theta().to(image.dtype), [b, c, geo.size, geo.size], align_corners=False)
    img = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(mask[:, None].to(image.dtype), grid, mode="nearest", padding_mode="border", align_corners=False)
    return img, m[:, 0].round().long()


def overlap_mask(g1: ViewGeometry, g2: ViewGeometry) -> torch.Tensor:
    """``(B, H, W)`` bool: original pixels seen by both views."""
    return g1.box_mask() & g2.box_mask()
