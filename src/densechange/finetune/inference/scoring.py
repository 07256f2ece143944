"""Score a change dataset with a predictor: full-size images, pixel counts per variant.

Used by validation during training (every rank scores its share of the images; the counts are
summed across processes afterwards) and by ``densechange evaluate``. Images keep their
full size: large tiles are predicted with windows and scored whole. A whole scene that the dataset
streams (:meth:`densechange.datasets.ChangeDataset.streamed`: WHU-CD's) is never held: it is
predicted block by block (:func:`densechange.finetune.inference.streaming.iter_blocks`, the very
blend of the whole scene's windows) and each block is scored against the label's window, so memory
does not grow with the scene. With ``nuisance`` settings the
same images are scored again with pseudo-changes applied to the second date: all nuisances
together (``pseudo_change``) and, with ``per_nuisance``, each alone (``pseudo_change_colour``,
``_blur``, ``_shift``). The nuisance of image ``i`` depends only on ``(seed, i)``, so the result
does not depend on batching or ranks. A streamed scene draws its nuisance once and applies it to
each block as it is read: contrast (relative to the mean), blur and shift then see the block's
pixels, not the whole scene's.

Every variant keeps a confusion matrix and a histogram of the change probability (AUROC, AP); a
nuisance variant also counts, pixel by pixel, how its decision differs from the clean pair's
(:mod:`densechange.finetune.flips`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import rasterio
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import IGNORE_INDEX, to_float_image
from densechange.datasets.readers.batching import group_by_shape
from densechange.engine.seeding import derive_seed

from densechange.finetune.deepcl.pseudo_change import NUISANCES, nuisance_changes
from densechange.finetune.flips import FlipCounts, flip_metrics
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.streaming import GDAL_CACHE_BASE_MB, PairSource, block_windows, iter_blocks
from densechange.finetune.inference.windows import WindowGrid
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

    def add(self, pred: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, clean: torch.Tensor | None) -> None:
        """Count decisions ``pred`` and probabilities ``prob`` against ``labels`` (and, under nuisances, the flips
        from the ``clean`` decisions); all ``(B, H, W)``."""
        self.confusion.update(pred, labels)
        self.histogram.update(prob, labels)
        if self.flips is not None:
            self.flips.update(clean, pred, labels)

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


def _nuisance_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample ``index``'s nuisances: it depends only on ``(seed, index)``."""
    return torch.Generator().manual_seed(derive_seed(seed, index, 0x9C))


def _second_dates(group: list[dict[str, Any]], kinds: Sequence[str] | None, settings: dict[str, Any],
                  seed: int) -> torch.Tensor:
    """The group's second dates, clean (``kinds`` None) or under nuisances seeded by ``(seed, index)``."""
    if kinds is None:
        return torch.stack([s["b"] for s in group])
    return torch.stack([nuisance_changes(s["b"], _nuisance_generator(seed, s["index"]), kinds, **settings) for s in group])


def _decide(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(B, K, H, W)`` -> change maps ``(B, H, W)`` and change probabilities ``(B, H, W)``."""
    return logits.argmax(1), logits.float().softmax(1)[:, 1]


class _NuisancePair:
    """A scene pair whose second date gets the nuisances ``kinds`` as each block is read.

    Every block draws the scene's nuisance strengths (one seed); the blocks come on the training
    scale as float32, which :func:`~densechange.datasets.io.images.to_float_batch` passes through.
    """

    def __init__(self, pair: PairSource, kinds: Sequence[str], settings: dict[str, Any], seed: int, index: int) -> None:
        self.pair, self.kinds, self.settings, self.seed, self.index = pair, kinds, settings, seed, index

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        a, b, valid = self.pair.read(top, left, height, width)
        b = nuisance_changes(to_float_image(b), _nuisance_generator(self.seed, self.index), self.kinds, **self.settings)
        return to_float_image(a).permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), valid


def _score_scene(predictor: Predictor, dataset: Dataset, index: int, variants: dict[str, tuple[str, ...] | None],
                 scores: dict[str, Scores], settings: dict[str, Any], seed: int) -> None:
    """Scene ``index`` block by block: every variant streams the same blocks in step, each scored against the
    label's window there (no-data in either date ignored)."""
    path_a, path_b = dataset.paths[index][:2]
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BASE_MB), contextlib.ExitStack() as stack:
        pairs = [stack.enter_context(PairSource(path_a, path_b)) for _ in variants]  # one reader per stream
        if pairs[0].bands != predictor.in_chans:
            raise DatasetError(f"{path_a} has {pairs[0].bands} bands but the model was trained on {predictor.in_chans}.")
        grid = WindowGrid.for_scene(pairs[0].height, pairs[0].width, window=predictor.window, overlap=predictor.overlap,
                                    margin=predictor.margin, align=predictor.stride)
        label_window = stack.enter_context(dataset.scene_labels(index, pairs[0].height, pairs[0].width))
        per_block = block_windows(grid.stride)
        streams = [iter_blocks(predictor, pair if kinds is None else _NuisancePair(pair, kinds, settings, seed, index),
                               grid, per_block, per_block) for pair, kinds in zip(pairs, variants.values())]
        for blocks in zip(*streams):
            (r0, r1, c0, c1), _, valid = blocks[0]
            labels = torch.from_numpy(label_window(r0, c0, r1 - r0, c1 - c0))
            if valid is not None:
                labels[~torch.from_numpy(valid)] = IGNORE_INDEX
            clean = None
            for (name, kinds), (_, result, _) in zip(variants.items(), blocks):
                pred, prob = _decide(result["logits"][None])
                clean = pred if kinds is None else clean
                scores[name].add(pred, prob, labels[None], clean)


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
        on_sample: called with each sample and its clean prediction ``(H, W)`` (not for streamed scenes).
    Returns:
        ``{"clean": scores}`` plus one entry per nuisance variant; call ``.all_reduce()`` then ``.metrics()``.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    variants: dict[str, tuple[str, ...] | None] = {"clean": None}
    if nuisance is not None:
        names = VARIANT_NUISANCES if per_nuisance else [ALL_NUISANCES]
        variants.update({name: VARIANT_NUISANCES[name] for name in names})
    scores = {name: Scores(flips=None if kinds is None else FlipCounts()) for name, kinds in variants.items()}
    settings = nuisance or {}
    streamed = getattr(dataset, "streamed", lambda index: False)
    for index in (i for i in indices if streamed(i)):
        _score_scene(predictor, dataset, index, variants, scores, settings, seed)
    whole = [i for i in indices if not streamed(i)]
    if not whole:
        return scores
    loader = DataLoader(Subset(dataset, whole), batch_size=None, num_workers=num_workers, shuffle=False)
    for group in _batches(_indexed(loader, whole), predictor.batch_size, predictor.window):
        labels = torch.stack([s["label"] for s in group])
        a = torch.stack([s["a"] for s in group])
        clean = None
        for name, kinds in variants.items():
            pred, prob = _decide(predictor.predict_batch(a, _second_dates(group, kinds, settings, seed))["logits"])
            if kinds is None:
                clean = pred
                if on_sample is not None:
                    for sample, p in zip(group, pred):
                        on_sample(sample, p)
            scores[name].add(pred, prob, labels, clean)
    return scores


def variant_metrics(scores: dict[str, Scores], device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Metrics of every variant from the counts summed over all processes (every rank gets them)."""
    return {name: s.all_reduce(device).metrics() for name, s in scores.items()}
