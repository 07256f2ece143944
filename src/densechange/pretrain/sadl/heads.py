"""Point-wise MLP heads: the projector and the predictor are the same block with other widths."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    """Sizes of SaDL's point heads and the dropout of the dense map they read (the reference's values).

    Args:
        proj_hidden, proj_dim: projector ``MLPHead(D, proj_hidden, proj_dim)``.
        pred_hidden: predictor ``MLPHead(proj_dim, pred_hidden, proj_dim)``.
        dropout: ``Dropout2d`` probability of the stride-4 map's channels.
    """

    proj_hidden: int = 2048
    proj_dim: int = 1024
    pred_hidden: int = 256
    dropout: float = 0.2


class MLPHead(nn.Sequential):
    """``Linear -> BatchNorm1d -> ReLU -> Linear`` applied to ``(N, in_dim)`` point features.

    SaDL projector: ``MLPHead(256, 2048, 1024)``; predictor: ``MLPHead(1024, 256, 1024)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
