"""The input bands themselves as a feature pyramid: the no-learning baseline of the probes.

``densechange probe encoder=bands`` scores this instead of a network. Each level is the mean of
the (normalised) bands over the ``s x s`` pixels of a cell, so at stride 4 the change probe's
``|f_A - f_B|`` is the pixel difference of the two dates averaged over 4x4 cells: what a pretrained
encoder has to beat to be worth anything for change detection.

Example:
    >>> levels = BandMeans(3).forward_pyramid(torch.rand(2, 3, 64, 64))
    >>> [tuple(level.shape[-2:]) for level in levels]
    [(16, 16), (8, 8), (4, 4), (2, 2)]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BandMeans"]


class BandMeans(nn.Module):
    """Cell means of the input bands at strides 4, 8, 16 and 32, shaped like :class:`~densechange.models.Encoder`'s levels.

    Args:
        in_chans: input bands (the width of every level).
    """

    def __init__(self, in_chans: int, strides: tuple[int, ...] = (4, 8, 16, 32)) -> None:
        super().__init__()
        self.in_chans = self.out_channels = int(in_chans)
        self.out_strides = list(strides)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, H / s, W / s)`` for every stride ``s``, finest first; a partial cell at the edge averages its pixels."""
        return [F.avg_pool2d(x, s, ceil_mode=True) for s in self.out_strides]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The finest level, as :meth:`Encoder.forward <densechange.models.Encoder.forward>`."""
        return self.forward_pyramid(x)[0]
