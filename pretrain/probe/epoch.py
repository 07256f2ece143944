"""The probe of a pretraining run: scores of its encoder on a labelled held-out set, every few epochs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from engine.distributed import broadcast_object

from .config import ProbeConfig
from .score import probe_encoder

__all__ = ["EpochProbe"]


class EpochProbe:
    """Probe scores of the run's encoder on a labelled held-out set, every ``every`` epochs (rank 0)."""

    def __init__(self, dataset: Dataset, *, num_classes: int, every: int, settings: ProbeConfig, mean: Sequence[float],
                 std: Sequence[float], seed: int, device: torch.device, is_main: bool) -> None:
        self.samples = [dataset[i] for i in range(len(dataset))] if is_main else []  # loaded once, reused every probe
        self.num_classes, self.every, self.settings = num_classes, every, settings
        self.mean, self.std, self.seed, self.device, self.is_main = list(mean), list(std), seed, device, is_main

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0

    def __call__(self, encoder: nn.Module) -> dict[str, float]:
        scores = None
        if self.is_main:
            result = probe_encoder(encoder, self.samples, num_classes=self.num_classes, mean=self.mean, std=self.std,
                                   settings=self.settings, seed=self.seed, device=self.device)
            scores = result.metrics(prefix="probe_")
        return broadcast_object(scores)  # type: ignore[return-value]
