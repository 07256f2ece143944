"""Score a change dataset split: full-size images, pixel counts per row, metrics from the counts of every process.

Validation during training, ``densechange evaluate`` and ``densechange compare`` all score through
:func:`score_split` with one :class:`ScoreSettings` (windows, pseudo-change rows, nuisances and
their seed, data-loading workers), so a split scored by any of them gives the same numbers. Every
process scores its share of the images (``rank::world_size``); the counts are summed across
processes before the metrics are taken.

Images keep their full size: large tiles are predicted with windows and scored whole. A whole scene
that the dataset streams (:meth:`densechange.datasets.ChangeDataset.streamed`: WHU-CD's) is never
held: it is predicted block by block (:class:`~densechange.finetune.inference.scene.Scene`, the very
blend of the whole scene's windows) and each block is scored against the label's window, so memory
does not grow with the scene.

The rows (:data:`ROWS`): ``clean``, then with ``pseudo_change`` set the same images again with
nuisance changes applied to the second date, all together (``pseudo_change``) and, with ``each``,
each alone (``pseudo_change_colour``, ``_blur``, ``_shift``: one row per nuisance of
:data:`~densechange.finetune.deepcl.pseudo_change.NUISANCES`). The nuisance of image ``i`` depends
only on ``(seed, i)``, so the result does not depend on batching or ranks. A streamed scene draws
its nuisance once and applies it to each block as it is read: contrast (relative to the mean), blur
and shift then see the block's pixels, not the whole scene's.

Every row keeps a confusion matrix and a histogram of the change probability (AUROC, AP); a
nuisance row also counts, pixel by pixel, how its decision differs from the clean pair's
(:mod:`densechange.finetune.flips`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from densechange.datasets.io.images import IGNORE_INDEX, to_float_image
from densechange.datasets.readers.batching import group_by_shape
from densechange.engine.distributed import DistInfo
from densechange.engine.errors import ConfigError
from densechange.engine.seeding import derive_seed

from densechange.finetune.deepcl.model import ChangeModel
from densechange.finetune.deepcl.pseudo_change import NUISANCES, NuisanceChanges, nuisance_changes
from densechange.finetune.flips import FlipCounts, flip_metrics
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.scene import open_scene
from densechange.finetune.inference.sources import PairReader
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.metrics import ConfusionMatrix, change_metrics
from densechange.engine.ranking import ProbabilityHistogram, ranking_scores


@dataclass(frozen=True)
class ScoreRow:
    """One row of the scores: its title in tables, the nuisances it applies (None: the clean pair), the prefix of
    its metrics in flat records (validation's logged keys, compare's columns) and its short name there."""

    title: str
    nuisances: tuple[str, ...] | None
    prefix: str
    name: str


CLEAN = "clean"
ALL_NUISANCES = "pseudo_change"
ROWS: dict[str, ScoreRow] = {
    CLEAN: ScoreRow("clean", None, "", "clean"),
    ALL_NUISANCES: ScoreRow("pseudo-change", NUISANCES, "pc_", "all"),
    **{f"{ALL_NUISANCES}_{k}": ScoreRow(f"{k} only", (k,), f"pc_{k}_", k) for k in NUISANCES},
}
"""Every row that scoring can report, in order, by its key in the results (``metrics.json``, ``result.json``)."""
NUISANCE_ROWS = tuple(k for k in ROWS if k != CLEAN)
PSEUDO_CHANGE = {"none": (CLEAN,), "all": (CLEAN, ALL_NUISANCES), "each": tuple(ROWS)}
"""``pseudo_change`` setting -> the rows scored."""


@dataclass
class NuisanceSettings(NuisanceChanges):
    """The nuisances' strengths (:class:`NuisanceChanges`) and their seed: ``val.nuisance``, ``evaluate``'s ``nuisance``."""

    seed: int = 0  # the nuisances of image i are drawn from (seed, i)

    def strengths(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~densechange.finetune.deepcl.pseudo_change.nuisance_changes`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(NuisanceChanges)}


@dataclass
class ScoreSettings:
    """How a split is scored; the ``val`` section of finetuning and the keys of ``densechange evaluate``."""

    window: WindowSettings = field(default_factory=WindowSettings)  # windows for images larger than one
    pseudo_change: str = "none"  # none | all (again under all nuisances together) | each (also each nuisance alone)
    nuisance: NuisanceSettings = field(default_factory=NuisanceSettings)  # nuisance strengths and seed
    num_workers: int = 0  # data-loading processes

    def rows(self) -> tuple[str, ...]:
        """The keys of the rows scored (see :data:`ROWS`)."""
        if self.pseudo_change not in PSEUDO_CHANGE:
            raise ConfigError(f"pseudo_change is '{self.pseudo_change}'; valid values: {', '.join(PSEUDO_CHANGE)}.")
        return PSEUDO_CHANGE[self.pseudo_change]


@dataclass
class Scores:
    """Pixel counts of one row: confusion matrix, probability histogram and, under nuisances, flips."""

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


def _batches(samples: Iterable[dict[str, Any]], predictor: Predictor) -> Iterator[list[dict[str, Any]]]:
    """Consecutive samples of one size that fit a window, as many as the predictor runs at once; larger ones alone.

    Loading one sample at a time and batching here keeps at most one large tile in memory.
    """
    return group_by_shape(samples, lambda s: tuple(s["a"].shape), lambda s: predictor.batch(*s["a"].shape[-2:]),
                          alone=lambda s: max(s["a"].shape[-2:]) > predictor.windows.size)


def _indexed(samples: Iterable[dict[str, Any]], indices: Sequence[int]) -> Iterator[dict[str, Any]]:
    """Samples with their dataset index, which seeds their nuisances."""
    for index, sample in zip(indices, samples):
        sample["index"] = index
        yield sample


def _nuisance_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample ``index``'s nuisances: it depends only on ``(seed, index)``."""
    return torch.Generator().manual_seed(derive_seed(seed, index, 0x9C))


def _second_dates(group: list[dict[str, Any]], kinds: Sequence[str] | None, nuisance: NuisanceSettings) -> torch.Tensor:
    """The group's second dates, clean (``kinds`` None) or under nuisances seeded by ``(seed, index)``."""
    if kinds is None:
        return torch.stack([s["b"] for s in group])
    return torch.stack([nuisance_changes(s["b"], _nuisance_generator(nuisance.seed, s["index"]), kinds,
                                         **nuisance.strengths()) for s in group])


def _decide(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(B, K, H, W)`` -> change maps ``(B, H, W)`` and change probabilities ``(B, H, W)``."""
    return logits.argmax(1), logits.float().softmax(1)[:, 1]


class _NuisancePair:
    """A scene pair whose second date gets the nuisances ``kinds`` as each block is read.

    Every block draws the scene's nuisance strengths (one seed); the blocks come on the training
    scale as float32, which :func:`~densechange.datasets.io.images.to_float_batch` passes through.
    """

    def __init__(self, pair: PairReader, kinds: Sequence[str], nuisance: NuisanceSettings, index: int) -> None:
        self.pair, self.kinds, self.nuisance, self.index = pair, kinds, nuisance, index

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        a, b, valid = self.pair.read(top, left, height, width)
        b = nuisance_changes(to_float_image(b), _nuisance_generator(self.nuisance.seed, self.index), self.kinds,
                             **self.nuisance.strengths())
        return to_float_image(a).permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), valid


def _score_scene(predictor: Predictor, dataset: Dataset, index: int, scores: dict[str, Scores],
                 nuisance: NuisanceSettings) -> None:
    """Scene ``index`` block by block: every row streams the same blocks in step, each scored against the
    label's window there (no-data in either date ignored)."""
    path_a, path_b = dataset.paths[index][:2]
    with contextlib.ExitStack() as stack:
        scenes = [stack.enter_context(open_scene(path_a, path_b, predictor.windows, predictor.stride))
                  for _ in scores]  # one reader per stream
        grid = scenes[0].grid
        label_window = stack.enter_context(dataset.scene_labels(index, grid.height, grid.width))
        kinds = [ROWS[name].nuisances for name in scores]
        streams = [predictor.blocks(scene if k is None else scene.reading(_NuisancePair(scene.pair, k, nuisance, index)))
                   for scene, k in zip(scenes, kinds)]
        for blocks in zip(*streams):
            (r0, r1, c0, c1), _, valid = blocks[0]
            labels = torch.from_numpy(label_window(r0, c0, r1 - r0, c1 - c0))
            if valid is not None:
                labels[~torch.from_numpy(valid)] = IGNORE_INDEX
            clean = None
            for name, (_, result, _) in zip(scores, blocks):
                pred, prob = _decide(result["logits"][None])
                clean = pred if ROWS[name].nuisances is None else clean
                scores[name].add(pred, prob, labels[None], clean)


def score_dataset(predictor: Predictor, dataset: Dataset, settings: ScoreSettings, *,
                  indices: Sequence[int] | None = None, on_sample: OnSample | None = None) -> dict[str, Scores]:
    """Pixel counts of ``predictor`` on ``dataset`` (this process's share, not yet reduced), one entry per row.

    The predictor brings its windows; ``settings`` says which rows, with which nuisances, and how
    many loading workers.

    Args:
        indices: samples to score (default: all); :func:`score_split` passes ``rank::world_size``.
        on_sample: called with each sample and its clean prediction ``(H, W)`` (not for streamed scenes).
    Returns:
        ``{"clean": scores, ...}`` in the order of :data:`ROWS`; call ``.all_reduce()`` then ``.metrics()``.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    scores = {name: Scores(flips=None if ROWS[name].nuisances is None else FlipCounts()) for name in settings.rows()}
    streamed = getattr(dataset, "streamed", lambda index: False)
    for index in (i for i in indices if streamed(i)):
        _score_scene(predictor, dataset, index, scores, settings.nuisance)
    whole = [i for i in indices if not streamed(i)]
    if not whole:
        return scores
    loader = DataLoader(Subset(dataset, whole), batch_size=None, num_workers=settings.num_workers, shuffle=False)
    for group in _batches(_indexed(loader, whole), predictor):
        labels = torch.stack([s["label"] for s in group])
        a = torch.stack([s["a"] for s in group])
        clean = None
        for name in scores:
            kinds = ROWS[name].nuisances
            pred, prob = _decide(predictor.predict_batch(a, _second_dates(group, kinds, settings.nuisance))["logits"])
            if kinds is None:
                clean = pred
                if on_sample is not None:
                    for sample, p in zip(group, pred):
                        on_sample(sample, p)
            scores[name].add(pred, prob, labels, clean)
    return scores


def row_metrics(scores: dict[str, Scores], device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Metrics of every row from the counts summed over all processes (every rank gets them)."""
    return {name: s.all_reduce(device).metrics() for name, s in scores.items()}


def score_split(model: ChangeModel, dataset: Dataset, settings: ScoreSettings, *, dist: DistInfo,
                precision: str = "fp32", optimise: bool = False, on_sample: OnSample | None = None
                ) -> dict[str, dict[str, float]]:
    """The metrics of ``model`` on a split, row by row (:data:`ROWS`): what validation, ``evaluate`` and ``compare`` report.

    Every process of ``dist`` scores its share; every process gets the metrics of the whole split.

    Args:
        settings: windows, rows, nuisances and loading workers.
        precision: the network's precision (``fp32``, ``bf16``, ``fp16``).
        optimise: fold the model's batch norms and make it channels-last first (a model that is no
            longer trained; validation scores the training model as it is).
        on_sample: called with each sample of this process and its clean prediction (validation's pictures).
    """
    settings.rows()  # a bad pseudo_change is an error before any image is read
    predictor = ChangePredictor(model, settings.window, device=dist.device, precision=precision, optimise=optimise)
    shard = range(dist.rank, len(dataset), dist.world_size)
    return row_metrics(score_dataset(predictor, dataset, settings, indices=shard, on_sample=on_sample), dist.device)
