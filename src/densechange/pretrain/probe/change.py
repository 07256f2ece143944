"""Does this encoder help change detection? Score its frozen features on change pairs, with no finetuning.

``densechange probe task=change`` compares one pyramid level of both dates cell by cell (see
:mod:`densechange.pretrain.probe.change_features`), fits a cheap head on a seeded, class-balanced
sample of the training split's cells (:mod:`densechange.pretrain.probe.change_head`) and scores
every cell of the test split:

- **sample**: each cell carries a key seeded by ``(seed, pair index)``; per class, the
  ``probe.pixels_per_class`` cells with the smallest keys over all pairs are kept (the bounded
  sample of :mod:`densechange.pretrain.probe.pixel_sample`), so the sample is the same for any
  batch size and any number of processes, and holds exactly that many cells of each class when
  the split has them;
- **scores**: a confusion matrix and a histogram of the change probability, counted batch by batch
  (memory flat in the dataset size) and summed over processes, give change F1, precision, recall
  and IoU at ``probe.threshold``, and the threshold-free AUROC: the counts and scores of
  finetuning's evaluation (:mod:`densechange.engine.confusion`, :mod:`densechange.engine.ranking`).

Under ``torchrun`` every process featurises its shard of the pairs; rank 0 fits the head on the
gathered sample and broadcasts it, and every process gets the summed scores.

    densechange probe task=change encoder=runs/sadl/encoder.safetensors data.root=/data/levir
    densechange probe task=change encoder=bands data.root=synthetic

The last line printed is ``change_f1=<f> change_auroc=<f>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from densechange.datasets.errors import DatasetError
from densechange.engine.confusion import ConfusionMatrix, change_metrics
from densechange.engine.distributed import broadcast_object, rank_and_world
from densechange.engine.ranking import ProbabilityHistogram, ranking_scores
from densechange.pretrain.probe.change_features import pair_cells
from densechange.pretrain.probe.change_head import ChangeHead, fit_head
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import PixelSet, cell_keys
from densechange.pretrain.probe.pixel_sample import SmallestKeys, gather_sample, shard_indices

__all__ = ["CLASSES", "ChangeProbeResult", "balanced_sample", "missing_classes", "score_pairs", "probe_change"]

CLASSES = (0, 1)  # unchanged, changed


@dataclass
class ChangeProbeResult:
    """Scores of one change probe; the cell counts say how much each number rests on."""

    f1: float
    auroc: float
    precision: float
    recall: float
    iou: float
    train_cells: tuple[int, int]  # sampled (unchanged, changed) cells the head was fitted on
    test_cells: int  # scored cells (ignored ones left out)
    train_pairs: int
    test_pairs: int
    head: str

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat scores for a metrics log, with the cell counts."""
        keys = ("f1", "auroc", "precision", "recall", "iou")
        return {**{f"{prefix}change_{k}": float(getattr(self, k)) for k in keys},
                f"{prefix}change_train_cells": float(sum(self.train_cells)), f"{prefix}change_test_cells": float(self.test_cells)}

    def summary(self) -> str:
        return f"change_f1={self.f1:.4f} change_auroc={self.auroc:.4f}"


def balanced_sample(batches: Iterable[tuple[list[int], torch.Tensor, torch.Tensor]], per_class: int,
                    seed: int) -> PixelSet | None:
    """Up to ``per_class`` cells of each class, those with the smallest seeded keys over all pairs and processes.

    Args:
        batches: ``(pair indices, cells (B, M, D), labels (B, M))`` as :func:`pair_cells` yields them.
    Returns:
        On rank 0 the cells (class 0 first, then class 1, each by pair and key; a class may have
        none, see :func:`missing_classes`); None elsewhere. Collective under ``torchrun``.
    """
    samples = [SmallestKeys(per_class) for _ in CLASSES]
    for indices, cells, labels in batches:
        keys = cell_keys(indices, labels.shape[1], seed)
        image = torch.tensor(indices, dtype=torch.long)[:, None].expand_as(keys)
        for c, sample in zip(CLASSES, samples):
            chosen = (labels == c).cpu()
            k = keys[chosen]
            where = chosen.nonzero()
            if k.numel() > per_class:  # only the batch's smallest keys can be among the smallest overall
                keep = k.topk(per_class, largest=False).indices
                k, where = k[keep], where[keep]
            rows = where.to(cells.device)
            sample.add(k, features=cells[rows[:, 0], rows[:, 1]].float(), image=image[where[:, 0], where[:, 1]])
    gathered = [gather_sample(sample) for sample in samples]
    if gathered[0] is None:
        return None
    parts = [(g, c) for g, c in zip(gathered, CLASSES) if g["total"]]
    if not parts:
        return PixelSet(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return PixelSet(
        features=np.ascontiguousarray(torch.cat([g["features"] for g, _ in parts]).numpy(), np.float32),
        labels=np.concatenate([np.full(g["total"], c, np.int64) for g, c in parts]),
        images=torch.cat([g["image"] for g, _ in parts]).numpy().astype(np.int64),
    )


def missing_classes(sample: PixelSet) -> str | None:
    """Why a head cannot be fitted on ``sample`` (a class without cells), or None."""
    missing = [name for c, name in zip(CLASSES, ("unchanged", "changed")) if not (sample.labels == c).any()]
    if not missing:
        return None
    return (f"the training split of the change probe has no {' and no '.join(missing)} cell (labels at the cell centres, "
            "ignored ones left out); set data.split to a split with both, or a smaller probe.stride.")


def score_pairs(head: ChangeHead, batches: Iterable[tuple[list[int], torch.Tensor, torch.Tensor]], *, threshold: float,
                device: torch.device | str = "cpu") -> tuple[ConfusionMatrix, ProbabilityHistogram]:
    """This process's counts of the head's calls (changed where the probability exceeds ``threshold``) and probabilities.

    A probability of exactly ``threshold`` (a head that cannot tell, e.g. on features that never differ) is unchanged.
    """
    confusion, histogram = ConfusionMatrix(device=device), ProbabilityHistogram(device=device)
    for _, cells, labels in batches:
        n, m, d = cells.shape
        prob = head.probability(cells.reshape(n * m, d)).view(n, m)
        confusion.update((prob > threshold).long(), labels)
        histogram.update(prob, labels)
    return confusion, histogram


def probe_change(encoder: nn.Module, train: Dataset, test: Dataset, *, mean: Sequence[float], std: Sequence[float],
                 settings: ProbeConfig | None = None, seed: int = 0,
                 device: torch.device | str = "cpu") -> ChangeProbeResult:
    """Fit the change head on ``train``'s sampled cells and score every cell of ``test`` (see the module docstring).

    Args:
        encoder: an :class:`~densechange.models.Encoder` (or any module with ``forward_pyramid`` and
            ``out_strides``, or one mapping images to stride-4 features); run in eval mode.
        train, test: change pairs ``{"a", "b": (C, H, W) float in [0, 1], "label": (H, W) long}``.
        mean, std: per-band input normalisation of both dates.
    Returns:
        The scores, on every process (collective under ``torchrun``).

    Example:
        >>> pairs = SyntheticChangeDataset(8, size=64)
        >>> probe_change(BandMeans(3), pairs, pairs, mean=[0.5] * 3, std=[0.5] * 3).summary()
        'change_f1=... change_auroc=...'
    """
    settings = settings or ProbeConfig()
    for name, ds in (("training", train), ("test", test)):
        if len(ds) == 0:
            raise DatasetError(f"the change probe's {name} split has no pairs.")
    device = torch.device(device)
    rank, world = rank_and_world()
    chunk = settings.batch_size

    def cells(dataset: Dataset):  # this process's shard, in batches as one process would cut them
        return pair_cells(encoder, dataset, shard_indices(len(dataset), rank, world, chunk), mean=mean, std=std,
                          settings=settings, device=device)

    was_training = encoder.training
    encoder.eval()
    try:
        sample = balanced_sample(cells(train), settings.pixels_per_class, seed)
        fitted: ChangeHead | str | None = None  # rank 0: the head, or why there is none
        if sample is not None:
            problem = missing_classes(sample)
            fitted = problem if problem else fit_head(sample.features, sample.labels, settings=settings, seed=seed)
        head = broadcast_object(fitted)
        if isinstance(head, str):
            raise DatasetError(head)
        confusion, histogram = score_pairs(head, cells(test), threshold=settings.threshold, device=device)
    finally:
        encoder.train(was_training)
    confusion, histogram = confusion.all_reduce(device), histogram.all_reduce(device)
    scores = change_metrics(confusion.matrix)
    auroc, _ = ranking_scores(histogram.counts)
    train_cells = broadcast_object(None if sample is None else tuple(int((sample.labels == c).sum()) for c in CLASSES))
    return ChangeProbeResult(
        f1=scores["change_f1"], auroc=auroc, precision=scores["change_precision"], recall=scores["change_recall"],
        iou=scores["change_iou"], train_cells=train_cells, test_cells=int(scores["pixels"]),  # type: ignore[arg-type]
        train_pairs=len(train), test_pairs=len(test), head=head.describe(),
    )
