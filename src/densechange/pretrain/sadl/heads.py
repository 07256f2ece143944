"""Point-wise MLP heads: the projector and the predictor are the same block with other widths."""
from __future__ import annotations

from torch import nn


class MLPHead(nn.Sequential):
    """``Linear -> BatchNorm1d -> ReLU -> Linear`` applied to ``(N, in_dim)`` point features.

    SaDL projector: ``MLPHead(256, 2048, 1024)``; predictor: ``MLPHead(1024, 256, 1024)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
