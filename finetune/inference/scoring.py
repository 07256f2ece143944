"""Score a change dataset with a predictor: full-size images, pixel counts per variant.

Used by validation during training (every rank scores its share of the images; the counts are
summed across processes afterwards) and by ``densechange evaluate``. Images keep their
full size: large tiles are predicted with windows and scored whole. With ``nuisance`` settings the
same images are scored again with pseudo-changes applied to the second date: all nuisances
together (``pseudo_change``) and, with ``per_nuisance``, each alone (``pseudo_change_colour``,
``_blur``, ``_shift``). The nuisance of image ``i`` depends only on ``(seed, i)``, so the result
does not depend on batching or ranks.

Every variant keeps a confusion matrix and a histogram of the change probability (AUROC, AP); a
nuisance variant also counts, pixel by pixel, how its decision differs from the clean pair's
(:mod:`densechange.finetune.flips`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from densechange.datasets.readers.batching import group_by_shape
from densechange.engine.seeding import derive_seed

from densechange.finetune.deepcl.pseudo_change import NUISANCES, nuisance_changes
from densechange.finetune.flips import FlipCounts, flip_metrics
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.metrics import ConfusionMatrix, change_metrics
from densechange.finetune.ranking import ProbabilityHistogram, ranking_scores

ALL_NUISANCES = "pseudo_change"
VARIANT_NUISANCES: dict[str, tuple[str, ...]] = {ALL_NUISANCES: NUISANCES, **{f"{ALL_NUISANCES}_{k}": (k,) for k in NUISANCES}}


@dataclass
class Scores:
    """Pixel counts of one variant: confusion matrix, probability histogram and, under nuisances, flips."""

    confusion: ConfusionMatrix = field(default_factory=ConfusionMatrix)
    histogram: ProbabilityHistogram = field(default_factory=ProbabilityHistogram)
    flips: FlipCounts | None = None

    @property
    def matrix(self) -> torch.Tensor:
        return self.confusion.matrix

    def all_reduce(self, device: str | torch.device | None = None) -> "Scores":
        """Every count summed over the processes (the same reduction for each)."""
        return Scores(self.confusion.all_reduce(device), self.histogram.all_reduce(device),
                      self.flips.all_reduce(device) if self.flips is not None else None)

    def metrics(self) -> dict[str, float]:
        """:func:`change_metrics` plus ``auroc`` and ``ap`` and, under nuisances, :func:`flip_metrics`."""
        auroc, ap = ranking_scores(self.histogram.counts)
        out = {**change_metrics(self.confusion.matrix), "auroc": auroc, "ap": ap}
        if self.flips is not None:
            out.update(flip_metrics(self.flips.counts))
        return out


OnSample = Callable[[dict[str, Any], torch.Tensor], None]


def _batches(samples: Iterable[dict[str, Any]], batch_size: int, window: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive samples of one size that fit a window, in batches; larger ones come alone.

    Loading one sample at a time and batching here keeps at most one large tile in memory.
    """
    return group_by_shape(samples, lambda s: tuple(s["a"].shape), batch_size, alone=lambda s: max(s["a"].shape[-2:]) > window)


def _indexed(samples: Iterable[dict[str, Any]], indices: Sequence[int]) -> Iterator[dict[str, Any]]:
    """Samples with their dataset index, which seeds their nuisances."""
    for index, sample in zip(indices, samples):
        sample["index"] = index
        yield sample


def _second_dates(group: list[dict[str, Any]], kinds: Sequence[str] | None, settings: dict[str, Any],
                  seed: int) -> torch.Tensor:
    """The group's second dates, clean (``kinds`` None) or under nuisances seeded by ``(seed, index)``."""
    if kinds is None:
        return torch.stack([s["b"] for s in group])
    return torch.stack([nuisance_changes(s["b"], torch.Generator().manual_seed(derive_seed(seed, s["index"], 0x9C)), kinds,
                                         **settings) for s in group])


def _predict(predictor: Predictor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Change maps ``(B, H, W)`` and change probabilities ``(B, H, W)`` of a group of equal-size samples."""
    logits = predictor.predict_batch(a, b)["logits"]
    return logits.argmax(1), logits.float().softmax(1)[:, 1]


def score_dataset(
    predictor: Predictor,
    dataset: Dataset,
    *,
    indices: Sequence[int] | None = None,
    nuisance: dict[str, Any] | None = None,
    per_nuisance: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    on_sample: OnSample | None = None,
) -> dict[str, Scores]:
    """Pixel counts of ``predictor`` on ``dataset`` (this process's share, not yet reduced).

    Args:
        indices: samples to score (default: all); training passes ``rank::world_size``.
        nuisance: keyword arguments of :func:`densechange.finetune.deepcl.pseudo_change.nuisance_changes`; adds the
            ``pseudo_change`` variant (all nuisances together).
        per_nuisance: with ``nuisance``, also each nuisance alone (``pseudo_change_colour``, ``_blur``, ``_shift``).
        seed: nuisance seed.
        on_sample: called with each sample and its clean prediction ``(H, W)``.
    Returns:
        ``{"clean": scores}`` plus one entry per nuisance variant; call ``.all_reduce()`` then ``.metrics()``.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    variants: dict[str, tuple[str, ...] | None] = {"clean": None}
    if nuisance is not None:
        names = VARIANT_NUISANCES if per_nuisance else [ALL_NUISANCES]
        variants.update({name: VARIANT_NUISANCES[name] for name in names})
    scores = {name: Scores(flips=None if kinds is None else FlipCounts()) for name, kinds in variants.items()}
    if not indices:
        return scores
    settings = nuisance or {}
    loader = DataLoader(Subset(dataset, indices), batch_size=None, num_workers=num_workers, shuffle=False)
    for group in _batches(_indexed(loader, indices), predictor.batch_size, predictor.window):
        labels = torch.stack([s["label"] for s in group])
        a = torch.stack([s["a"] for s in group])
        clean = None
        for name, kinds in variants.items():
            pred, prob = _predict(predictor, a, _second_dates(group, kinds, settings, seed))
            s = scores[name]
            s.confusion.update(pred, labels)
            s.histogram.update(prob, labels)
            if kinds is None:
                clean = pred
                if on_sample is not None:
                    for sample, p in zip(group, pred):
                        on_sample(sample, p)
            else:
                s.flips.update(clean, pred, labels)
    return scores


def variant_metrics(scores: dict[str, Scores], device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Metrics of every variant from the counts summed over all processes (every rank gets them)."""
    return {name: s.all_reduce(device).metrics() for name, s in scores.items()}
