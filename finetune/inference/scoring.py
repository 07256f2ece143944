"""Score a change dataset with a predictor: full-size images, one confusion matrix per variant.

Used by validation during training (every rank scores its share of the images; the matrices are
summed across processes afterwards) and by ``densechange evaluate``. Images keep their
full size: large tiles are predicted with windows and scored whole. With ``nuisance`` settings the
same images are scored a second time with pseudo-changes applied to the second date; the nuisance
of image ``i`` depends only on ``(seed, i)``, so the result does not depend on batching or ranks.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from densechange.datasets.readers.batching import group_by_shape
from densechange.engine.seeding import derive_seed

from densechange.finetune.deepcl.pseudo_change import nuisance_changes
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.metrics import ConfusionMatrix

OnSample = Callable[[dict[str, Any], torch.Tensor], None]


def _batches(samples: Iterable[dict[str, Any]], batch_size: int, window: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive samples of one size that fit a window, in batches; larger ones come alone.

    Loading one sample at a time and batching here keeps at most one large tile in memory.
    """
    return group_by_shape(samples, lambda s: tuple(s["a"].shape), batch_size, alone=lambda s: max(s["a"].shape[-2:]) > window)


def _with_nuisance(samples: Iterable[dict[str, Any]], indices: Sequence[int], nuisance: dict[str, Any] | None,
                   seed: int) -> Iterator[dict[str, Any]]:
    """Samples with ``b_nuisance`` added: the second date under nuisance changes seeded by ``(seed, index)``."""
    for index, sample in zip(indices, samples):
        if nuisance is not None:
            g = torch.Generator().manual_seed(derive_seed(seed, index, 0x9C))
            sample["b_nuisance"] = nuisance_changes(sample["b"], g, **nuisance)
        yield sample


def _predict(predictor: Predictor, group: list[dict[str, Any]], b_key: str) -> torch.Tensor:
    """Change maps ``(B, H, W)`` of a group of equal-size samples."""
    a = torch.stack([s["a"] for s in group])
    b = torch.stack([s[b_key] for s in group])
    return predictor.predict_batch(a, b)["logits"].argmax(1)


def score_dataset(
    predictor: Predictor,
    dataset: Dataset,
    *,
    indices: Sequence[int] | None = None,
    nuisance: dict[str, Any] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    on_sample: OnSample | None = None,
) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of ``predictor`` on ``dataset`` (this process's share, not yet reduced).

    Args:
        indices: samples to score (default: all); training passes ``rank::world_size``.
        nuisance: keyword arguments of :func:`densechange.finetune.deepcl.pseudo_change.nuisance_changes`; adds the
            ``pseudo_change`` variant.
        seed: nuisance seed.
        on_sample: called with each sample and its clean prediction ``(H, W)``.
    Returns:
        ``{"clean": cm}`` plus ``{"pseudo_change": cm}`` with ``nuisance``.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    variants = {"clean": "b", **({"pseudo_change": "b_nuisance"} if nuisance is not None else {})}
    cms = {name: ConfusionMatrix(2) for name in variants}
    if not indices:
        return cms
    loader = DataLoader(Subset(dataset, indices), batch_size=None, num_workers=num_workers, shuffle=False)
    for group in _batches(_with_nuisance(loader, indices, nuisance, seed), predictor.batch_size, predictor.window):
        labels = torch.stack([s["label"] for s in group])
        for name, b_key in variants.items():
            pred = _predict(predictor, group, b_key)
            cms[name].update(pred, labels)
            if name == "clean" and on_sample is not None:
                for s, p in zip(group, pred):
                    on_sample(s, p)
    return cms
