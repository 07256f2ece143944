"""Pseudo-changes: nuisance differences between dates that a change detector must ignore.

Training (:class:`PseudoChangeAugment`) distorts each date independently with colour jitter and
blur and swaps the two dates of a random subset of pairs (change is symmetric, so the label stays).
Evaluation (:func:`nuisance_changes`) applies a fixed-strength set of nuisances to the second date
only: illumination and colour, blur and a 1-2 pixel shift, drawn from a seed, together or one at
a time, to measure how much they change the detector's decisions. Everything is batched tensor code on the device; random parameters come
from an explicit CPU generator, so the draws are the same on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from densechange.datasets.transforms.photometric import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    bernoulli,
    color_jitter,
    gaussian_blur,
    uniform,
)


def blur_kernel_size(sigma_max: float) -> int:
    """Odd kernel size covering two standard deviations on each side."""
    return 2 * max(1, math.ceil(2 * sigma_max)) + 1


def date_swap(
    a: torch.Tensor, b: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exchange ``a`` and ``b`` for a random subset (probability ``p``) of the batch ``(B, C, H, W)``."""
    if p <= 0:
        return a, b
    swap = bernoulli(a.shape[0], p, generator, a.device).view(-1, 1, 1, 1)
    return torch.where(swap, b, a), torch.where(swap, a, b)


@dataclass
class PseudoChangeAugment:
    """Training-time pseudo-change robustness: independent photometry per date, then random date swap.

    Its fields are also the ``aug`` section of the finetuning config (the defaults live here only).

    Args:
        photometric: colour jitter and blur each date independently.
        jitter: brightness, contrast, saturation, hue ranges (torchvision convention).
        jitter_p, blur_p: probabilities per image.
        blur_sigma: blur standard deviation range in pixels.
        swap_p: probability of swapping the dates of a pair (0 disables).

    Example:
        >>> aug = PseudoChangeAugment()
        >>> a, b = aug(torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64), torch.Generator().manual_seed(0))
    """

    photometric: bool = True  # colour jitter and blur each date independently
    jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.05)  # brightness, contrast, saturation, hue strengths (torchvision convention)
    jitter_p: float = 0.8  # probability of the colour jitter, per image
    blur_p: float = 0.3  # probability of a Gaussian blur, per image
    blur_sigma: tuple[float, float] = (0.1, 1.5)  # range of the blur's standard deviation in pixels
    swap_p: float = 0.5  # probability of exchanging the two dates of a pair (0: never)

    def distort(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = color_jitter(x, *self.jitter, p=self.jitter_p, generator=generator)
        if self.blur_p <= 0:
            return x
        k = blur_kernel_size(self.blur_sigma[1])
        return gaussian_blur(x, tuple(self.blur_sigma), p=self.blur_p, kernel_size=k, generator=generator)

    def __call__(
        self, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.photometric:
            a, b = self.distort(a, generator), self.distort(b, generator)
        return date_swap(a, b, self.swap_p, generator)


def shift_image(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate each image of ``(B, C, H, W)`` by whole pixels ``(dy, dx)``, repeating the border.

    One edge-padded copy, then one slice per image: memory stays at one padded copy even for
    full-size tiles.
    """
    _, _, h, w = x.shape
    m = max_shift
    pad = torch.nn.functional.pad(x, (m, m, m, m), mode="replicate")
    return torch.stack([p[:, m - int(y) : m - int(y) + h, m - int(z) : m - int(z) + w] for p, y, z in zip(pad, dy, dx)])


def _nonzero_shifts(n: int, max_shift: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifts in ``[-max_shift, max_shift]^2`` without ``(0, 0)``: 1 to ``max_shift`` pixels of misregistration."""
    choices = torch.tensor([(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
                            if (dy, dx) != (0, 0)])
    pick = choices[torch.randint(len(choices), (n,), generator=generator)]
    return pick[:, 0], pick[:, 1]


@dataclass
class NuisanceChanges:
    """Strengths of the evaluation nuisances; also the ``pseudo_change`` section of the evaluation config.

    Args:
        brightness, contrast, saturation: factor ranges.
        hue: hue shift range ``[-hue, hue]`` (3-band images).
        blur_sigma: Gaussian blur standard deviation range in pixels.
        max_shift: every image is shifted by 1 to ``max_shift`` pixels in at least one direction.
    """

    brightness: tuple[float, float] = (0.7, 1.3)  # range of the brightness factor
    contrast: tuple[float, float] = (0.8, 1.2)  # range of the contrast factor
    saturation: tuple[float, float] = (0.7, 1.3)  # range of the saturation factor (3-band images)
    hue: float = 0.05  # hue shift range [-hue, hue] (3-band images)
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # range of the Gaussian blur's standard deviation in pixels
    max_shift: int = 2  # pixels; every image is shifted by 1..max_shift in at least one direction


NUISANCES = ("colour", "blur", "shift")  # illumination and colour; Gaussian blur; misregistration


def nuisance_changes(b: torch.Tensor, generator: torch.Generator, kinds: Sequence[str] = NUISANCES,
                     **settings: Any) -> torch.Tensor:
    """Second date with evaluation nuisances: illumination and colour, blur, and a small shift.

    Strengths are drawn from ``generator`` (deterministic for a seed): brightness and contrast
    factors, saturation and hue (3-band images), a Gaussian blur, and a misregistration of 1 to
    ``max_shift`` pixels. Every draw is made whatever ``kinds`` holds, in one fixed order, so a
    nuisance applied alone is exactly the one it contributes to all of them together (same
    generator state): the per-nuisance scores of an image decompose its all-nuisance score.

    Args:
        b: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]``.
        kinds: the nuisances to apply, a subset of :data:`NUISANCES` (default: all, in that order).
        settings: fields of :class:`NuisanceChanges` to change from its defaults.
    Returns:
        Tensor of the same shape.
    """
    unknown = sorted(set(kinds) - set(NUISANCES))
    if unknown:
        raise ValueError(f"unknown nuisance(s) {unknown}; choose among {', '.join(NUISANCES)}")
    s = NuisanceChanges(**settings)
    single = b.dim() == 3
    x = b.unsqueeze(0) if single else b
    n, dev = x.shape[0], x.device
    bright, contrast = uniform(n, *s.brightness, generator, dev), uniform(n, *s.contrast, generator, dev)
    rgb = x.shape[1] == 3
    sat = uniform(n, *s.saturation, generator, dev) if rgb else None
    hue = uniform(n, -s.hue, s.hue, generator, dev) if rgb and s.hue > 0 else None
    if "colour" in kinds:
        x = adjust_contrast(adjust_brightness(x, bright), contrast)
        if sat is not None:
            x = adjust_saturation(x, sat)
        if hue is not None:
            x = adjust_hue(x, hue)
    kernel = blur_kernel_size(s.blur_sigma[1])
    if "blur" in kinds:
        x = gaussian_blur(x, tuple(s.blur_sigma), p=1.0, kernel_size=kernel, generator=generator)
    else:  # the draws gaussian_blur would make, so that the shift below is the same
        bernoulli(n, 1.0, generator, dev)
        uniform(n, *s.blur_sigma, generator, dev)
    if s.max_shift > 0:
        dy, dx = _nonzero_shifts(n, s.max_shift, generator)
        if "shift" in kinds:
            x = shift_image(x, dy.to(dev), dx.to(dev), s.max_shift)
    return x[0] if single else x
