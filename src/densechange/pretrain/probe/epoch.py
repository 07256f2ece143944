"""The probe of a pretraining run: scores of its encoder on a labelled held-out set, every few epochs.

With ``probe.task=segmentation`` (:class:`EpochProbe`) the set is image-mask pairs, scored by kNN and
k-means; with ``probe.task=change`` (:class:`EpochChangeProbe`) it is change pairs, scored by the change
probe's head: whether the pretraining is helping change detection, while it runs.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn
from torch.utils.data import Dataset

from densechange.engine.distributed import broadcast_object
from densechange.engine.loop import RunContext

from densechange.pretrain.probe.change import probe_change
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.score import probe_encoder

__all__ = ["EpochProbe", "EpochChangeProbe"]


class EpochProbe:
    """Probe scores of the run's encoder on a labelled held-out set, every ``every`` epochs.

    ``ctx`` gives the run's seed, device and main process. Every rank featurises its shard of the held-out images; a bounded sample of pixels
    (``probe.max_pixels``) is gathered on rank 0, which scores it and broadcasts the scores. Rank 0
    also prints how many pixels were scored and which kNN index served them; both go to the
    metrics log with the scores.
    """

    def __init__(self, dataset: Dataset, *, num_classes: int, every: int, settings: ProbeConfig, mean: Sequence[float],
                 std: Sequence[float], ctx: RunContext) -> None:
        self.dataset, self.num_classes, self.every, self.settings = dataset, num_classes, every, settings
        self.mean, self.std = list(mean), list(std)
        self.seed, self.device, self.is_main = ctx.seed, ctx.dist.device, ctx.is_main

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0

    def __call__(self, encoder: nn.Module) -> dict[str, float | str]:
        result = probe_encoder(encoder, self.dataset, num_classes=self.num_classes, mean=self.mean, std=self.std,
                               settings=self.settings, seed=self.seed, device=self.device)
        scores = None
        if result is not None:
            scores = result.metrics(prefix="probe_")
            limit = self.settings.max_pixels
            print(f"probe: {result.pixels} pixels of {result.images} images (probe.max_pixels={limit}), "
                  f"kNN index: {result.knn_index}; {result.summary()}", flush=True)
        return broadcast_object(scores)  # type: ignore[return-value]


class EpochChangeProbe:
    """Change-probe scores of the run's encoder, every ``every`` epochs (see :mod:`densechange.pretrain.probe.change`).

    Every rank featurises its shard of both splits; rank 0 fits the head on the gathered sample,
    and every rank gets the summed scores. Logged as ``probe_change_f1``, ``probe_change_auroc``,
    precision, recall, IoU and the cell counts.
    """

    def __init__(self, train: Dataset, test: Dataset, *, every: int, settings: ProbeConfig, mean: Sequence[float],
                 std: Sequence[float], ctx: RunContext) -> None:
        self.train, self.test, self.every, self.settings = train, test, every, settings
        self.mean, self.std = list(mean), list(std)
        self.seed, self.device, self.is_main = ctx.seed, ctx.dist.device, ctx.is_main

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0

    def __call__(self, encoder: nn.Module) -> dict[str, float]:
        result = probe_change(encoder, self.train, self.test, mean=self.mean, std=self.std, settings=self.settings,
                              seed=self.seed, device=self.device)
        if self.is_main:
            print(f"probe: change head on {sum(result.train_cells)} cells of {result.train_pairs} pairs, scored on "
                  f"{result.test_cells} cells of {result.test_pairs} pairs; {result.summary()}", flush=True)
        return result.metrics(prefix="probe_")
