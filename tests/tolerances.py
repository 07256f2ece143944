"""Tolerances of the tests that compare two code paths whose floats come from different kernels.

Batch norms folded or not, channels-last or not, ONNX Runtime or PyTorch, one process or two, AVX2
or AVX-512 kernels: the same network computed two ways agrees to rounding, not bit for bit. A test
of such a pair compares floats within a tolerance set by the precision, and what is a discontinuous
function of those floats (an argmax decision, a histogram bin, the confusion counts and every score
made from them, AUROC and AP) within the effect of the pixels that tie within that tolerance:

- a pixel whose two logits lie within ``2 * atol`` of each other may take either decision;
- a pixel whose change probability lies within ``p (1 - p) * 2 * atol`` (the softmax's slope times
  the largest change of the logit difference) plus float32's own rounding of a bin edge may fall
  into either bin.

:func:`score_bounds` turns one path's logits into the interval each score may take on any path
within ``atol`` of it: the tied pixels moved every possible way for the confusion-matrix scores,
all one way for AUROC (monotone in every such move), and the effects of each group of movable
pixels added for AP (not monotone: a changed pixel that rises into a bin of unchanged ones can
lower it). When no pixel ties, every interval is the one value of the reference, so the test is
exact wherever the data allow it.
"""
from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from torch.utils.data import Subset

from densechange.datasets import IGNORE_INDEX
from densechange.finetune.inference.backend import Prediction, Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.scoring import ScoreSettings, _decide, score_dataset
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.metrics import ConfusionMatrix, change_metrics
from densechange.engine.ranking import DEFAULT_BINS, ranking_scores

FP32_FOLD_RTOL = 1e-5
"""Folded batch norms and channels-last against the model as it trains, fp32: the largest logit difference,
relative to the largest logit (measured: 3e-7 on the tiny finetuning run's test_resnet, 4e-7 on a fresh
ResNet-18, 6e-6 on a ResNet-18 whose norms hold statistics far from (0, 1))."""

ONNX_FP32_ATOL = 1e-4
"""ONNX Runtime against PyTorch, fp32, on the test models' logits and distances (the export's own check)."""

PROBABILITY_ROUNDING = 1e-6
"""float32's rounding of a softmax probability and of ``p * bins`` on any instruction set: a few ulps of 1."""

METRIC_ROUNDING = 1e-12
"""Scores computed in float64 from equal counts, in another order of operations."""

MAX_MOVES = 40_000  # tied-pixel arrangements the confusion bounds enumerate before they give up

Bounds = dict[str, tuple[float, float]]


def decision_ties(logits: torch.Tensor, atol: float) -> torch.Tensor:
    """``(N,)`` bool: pixels of ``(N, 2)`` logits whose decision another path within ``atol`` may take the other way."""
    return (logits[:, 1] - logits[:, 0]).abs() <= 2 * atol


def bin_moves(prob: torch.Tensor, atol: float, bins: int = DEFAULT_BINS
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pixel's bin, and whether a path within ``atol`` of its logits may put it one bin up, or down."""
    index = (prob.float() * bins).long().clamp(0, bins - 1)  # the histogram's own rule
    p = prob.double()
    slack = 2 * atol * p * (1 - p) + PROBABILITY_ROUNDING
    up = ((p + slack) * bins).floor().clamp(max=bins - 1).long() > index
    down = ((p - slack) * bins).floor().clamp(min=0).long() < index
    return index, up, down


def _histogram(index: torch.Tensor, label: torch.Tensor, bins: int) -> torch.Tensor:
    return torch.bincount(label * bins + index, minlength=2 * bins).view(2, bins)


def confusion_bounds(pred: torch.Tensor, label: torch.Tensor, tied: torch.Tensor) -> Bounds:
    """Range of every :func:`change_metrics` score over all decisions of the ``tied`` pixels.

    In each label row, the tied pixels can move from column 0 to column 1 or back; every pair of
    row moves is scored (the scores are not all monotone: kappa is not).
    """
    matrix = ConfusionMatrix()
    matrix.update(pred, label)
    ties = ConfusionMatrix()
    ties.update(pred[tied], label[tied])
    t = ties.matrix.tolist()
    rows = [range(-t[r][1], t[r][0] + 1) for r in (0, 1)]  # net pixels moved into column 1 of label row r
    if len(rows[0]) * len(rows[1]) > MAX_MOVES:
        raise AssertionError(f"{int(tied.sum())} pixels tie within the tolerance: too many to bound the scores; "
                             "the tolerance or the test data are wrong")
    bounds: Bounds = {}
    for a, b in itertools.product(*rows):
        moved = matrix.matrix + torch.tensor([[-a, a], [-b, b]])
        for key, value in change_metrics(moved).items():
            lo, hi = bounds.get(key, (value, value))
            bounds[key] = (min(lo, value), max(hi, value))
    return bounds


def ranking_bounds(prob: torch.Tensor, label: torch.Tensor, atol: float, bins: int = DEFAULT_BINS) -> Bounds:
    """Range of AUROC and AP when every pixel near a bin edge (:func:`bin_moves`) may cross it."""
    index, up, down = bin_moves(prob, atol, bins)
    counts = _histogram(index, label, bins)
    auroc, ap = ranking_scores(counts)
    if math.isnan(auroc):
        return {"auroc": (auroc, auroc), "ap": (ap, ap)}
    changed = label == 1
    # AUROC only grows when a changed pixel rises or an unchanged one falls: its extremes move them all one way
    best = _histogram(index + (up & changed).long() - (down & ~changed).long(), label, bins)
    worst = _histogram(index - (down & changed).long() + (up & ~changed).long(), label, bins)
    # AP is not monotone: each group of pixels that can move together (class, bin, direction) is moved alone
    effect = 0.0
    for step, movable in ((1, up), (-1, down)):
        groups = torch.bincount(label[movable] * bins + index[movable], minlength=2 * bins).view(2, bins)
        for cls, source in groups.nonzero().tolist():
            moved = counts.clone()
            moved[cls, source] -= groups[cls, source]
            moved[cls, source + step] += groups[cls, source]
            effect += abs(ranking_scores(moved)[1] - ap)
    return {"auroc": (ranking_scores(worst)[0], ranking_scores(best)[0]),
            "ap": (max(0.0, ap - effect), min(1.0, ap + effect))}


def _share_bounds(x: int, dx: int, y: int, dy: int) -> tuple[float, float]:
    """Range of ``x' / y'`` (0 when ``y' = 0``) for ``|x' - x| <= dx``, ``|y' - y| <= dy`` and ``0 <= x' <= y'``."""
    if y + dy == 0:
        return 0.0, 0.0
    lo = max(0, x - dx) / (y + dy)
    hi = min(1.0, (x + dx) / max(y - dy, 1))
    return lo, hi


def flip_bounds(clean: torch.Tensor, pred: torch.Tensor, label: torch.Tensor, clean_tied: torch.Tensor,
                tied: torch.Tensor) -> Bounds:
    """Range of :func:`flip_metrics` when the clean decisions of ``clean_tied`` and the nuisance decisions of
    ``tied`` pixels may flip."""
    either = clean_tied | tied
    flipped = clean != pred
    out = {"flip_rate": _share_bounds(int(flipped.sum()), int(either.sum()), label.numel(), 0)}
    for key, cls in (("induced_false_alarms", 0), ("induced_misses", 1)):
        row = label == cls
        found = row & (clean == cls)  # unchanged pixels called unchanged / changed pixels found, on the clean pair
        out[key] = _share_bounds(int((found & flipped).sum()), int((row & either).sum()), int(found.sum()),
                                 int((row & clean_tied).sum()))
    return out


def score_bounds(logits: torch.Tensor, label: torch.Tensor, atol: float,
                 clean: torch.Tensor | None = None) -> Bounds:
    """The interval of every score that a path within ``atol`` of these logits may reach.

    Args:
        logits: ``(N, 2)`` logits of the scored pixels.
        label: ``(N,)`` their labels (0/1; ignored pixels left out).
        atol: largest difference between a logit of the two paths.
        clean: ``(N, 2)`` logits of the clean pair when ``logits`` are a nuisance variant's: adds the flip scores.
    """
    pred, prob = _decide(logits)
    tied = decision_ties(logits, atol)
    bounds = {**confusion_bounds(pred, label, tied), **ranking_bounds(prob, label, atol)}
    if clean is not None:
        bounds.update(flip_bounds(_decide(clean)[0], pred, label, decision_ties(clean, atol), tied))
    return bounds


def assert_within(metrics: Mapping[str, float], bounds: Bounds, keys: Iterable[str] | None = None,
                  prefix: str = "") -> None:
    """Every score of ``metrics`` (those of ``keys``, read as ``prefix + key``) lies in its interval."""
    outside = {}
    for key in bounds if keys is None else keys:
        lo, hi = bounds[key]
        value = metrics[prefix + key]
        if math.isnan(lo) or math.isnan(value):
            inside = math.isnan(lo) and math.isnan(value)
        else:
            inside = lo - METRIC_ROUNDING <= value <= hi + METRIC_ROUNDING
        if not inside:
            outside[prefix + key] = (value, (lo, hi))
    assert not outside, f"scores outside what the tied pixels allow: {outside}"


class _OnePairAtATime(Predictor):
    """``predictor`` handing ``score_dataset`` one pair per batch, keeping each batch's logits in order."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor, self.logits = predictor, []
        self.windows, self.device = predictor.windows, predictor.device

    in_chans = property(lambda self: self.predictor.in_chans)
    stride = property(lambda self: self.predictor.stride)
    has_distance = property(lambda self: self.predictor.has_distance)

    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        return self.predictor.forward_windows(a, b)

    def batch(self, height: int, width: int) -> int:
        return 1

    def predict_batch(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        out = self.predictor.predict_batch(a, b)
        self.logits.append(out["logits"])
        return out


def scored_pixels(predictor: Predictor, dataset: Any, settings: ScoreSettings
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Logits ``(N, 2)`` and labels ``(N,)`` of every pixel that :func:`score_dataset` scores, per row.

    Args:
        predictor: the reference path (e.g. the model as validation runs it).
        dataset: pairs held whole (not streamed scenes).
        settings: the rows, nuisances and seed of :func:`score_dataset`.
    """
    recorder = _OnePairAtATime(predictor)
    names = list(score_dataset(recorder, dataset, settings))  # the rows, in the order each pair runs them
    assert len(recorder.logits) == len(dataset) * len(names)
    pixels: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {name: ([], []) for name in names}
    for k, logits in enumerate(recorder.logits):
        label = dataset[k // len(names)]["label"].flatten()
        valid = label != IGNORE_INDEX
        logits_k, labels_k = pixels[names[k % len(names)]]
        logits_k.append(logits[0].flatten(1).T[valid])
        labels_k.append(label[valid])
    return {name: (torch.cat(logits), torch.cat(labels)) for name, (logits, labels) in pixels.items()}


def fold_bounds(model: nn.Module, dataset: Any, windows: WindowSettings,
                settings: ScoreSettings | None = None) -> dict[str, Bounds]:
    """Bounds of every variant's scores of ``model`` on ``dataset``, as validation scores it (the model as it
    trains) and as ``densechange evaluate`` does (folded norms, channels-last): both lie within them.

    The bounds are those of the training model's logits at :data:`FP32_FOLD_RTOL`; that the folded model's
    logits agree with them within it is checked on the first pair (the fold's rounding is the weights', any input
    shows it). ``settings``: the rows to bound (default: the clean one), see :func:`scored_pixels`.
    """
    settings = settings or ScoreSettings()
    plain = scored_pixels(ChangePredictor(copy.deepcopy(model), windows), dataset, settings)
    folded = scored_pixels(ChangePredictor(copy.deepcopy(model), windows, optimise=True), Subset(dataset, [0]), settings)
    atol = FP32_FOLD_RTOL * max(float(logits.abs().max()) for logits, _ in plain.values())
    difference = max(float((plain[name][0][: len(logits)] - logits).abs().max())
                     for name, (logits, _) in folded.items())
    assert difference <= atol, f"the folded model's logits differ by {difference:.3g}, more than fp32's {atol:.3g}"
    clean = plain["clean"][0]
    return {name: score_bounds(logits, label, atol, clean=None if name == "clean" else clean)
            for name, (logits, label) in plain.items()}
