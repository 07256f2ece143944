"""Change-detection scores from one confusion matrix accumulated over a whole evaluation.

Scores are computed once, from the pixel counts of the whole evaluation summed over every process,
never averaged over images or batches (an average of per-image F1 would weigh a 10-pixel change as
much as a 10 000-pixel one). Rows of the matrix are the label, columns the prediction; class 0 is
"unchanged", class 1 "changed". Finetuning's validation and ``densechange evaluate`` score with it,
and so does the change probe of pretraining, so both stages count the same way.

A ratio whose denominator is zero (a class absent from both label and prediction) is 1: nothing
was to be found and nothing was falsely found. When only one side is empty the score is 0.

Example:
    >>> cm = ConfusionMatrix()
    >>> cm.update(pred, label)            # (B, H, W) long each; IGNORE_INDEX pixels are skipped
    >>> metrics = change_metrics(cm.all_reduce().matrix)
"""
from __future__ import annotations

import torch

from densechange.datasets import IGNORE_INDEX
from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import all_reduce_sum

__all__ = ["CLASS_NAMES", "CHANGE", "SCORES", "ConfusionMatrix", "class_scores", "cohen_kappa", "change_metrics"]

CLASS_NAMES = ("unchanged", "changed")
CHANGE = 1
SCORES = ("precision", "recall", "f1", "iou")


class ConfusionMatrix:
    """Pixel counts ``(K, K)`` (label rows, prediction columns), int64, kept on ``device``."""

    def __init__(self, num_classes: int = 2, device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add the pixels of ``pred`` and ``label`` (same shape, class ids); ignored labels are left out."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in shape")
        k = self.num_classes
        valid = label != IGNORE_INDEX
        for what, values in (("label", label[valid]), ("prediction", pred[valid])):
            if values.numel() and (values.min() < 0 or values.max() >= k):
                found = sorted(set(torch.unique(values).tolist()) - set(range(k)))
                raise DatasetError(f"{what} values {found[:8]} are outside 0..{k - 1} and the ignore value {IGNORE_INDEX}; "
                                 "check data.ignore_value and the label encoding (0/255 or 0/1).")
        idx = label[valid].to(self.matrix.device).long() * k + pred[valid].to(self.matrix.device).long()
        self.matrix += torch.bincount(idx, minlength=k * k).view(k, k)

    def all_reduce(self, device: str | torch.device | None = None) -> "ConfusionMatrix":
        """A new matrix of the counts summed over every process (a copy for one process).

        This process's own counts stay as they are, so a second call gives the same sum rather
        than the sum times the number of processes. ``device`` is where the collective runs: the
        process group's device (CUDA for nccl).
        """
        reduced = ConfusionMatrix(self.num_classes, device=self.matrix.device)
        summed = all_reduce_sum(self.matrix.to(device or self.matrix.device, copy=True))
        reduced.matrix = summed.to(self.matrix.device)
        return reduced


def _ratio(num: torch.Tensor, den: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """``num / den``; where ``den == 0`` the value is 1 if ``empty`` (nothing to score) else 0."""
    return torch.where(den > 0, num / den.clamp(min=1), empty.double())


def class_scores(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class precision, recall, F1 and IoU, each a ``(K,)`` float64 tensor."""
    cm = matrix.double().cpu()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    return {
        "precision": _ratio(tp, tp + fp, fn == 0),
        "recall": _ratio(tp, tp + fn, fp == 0),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, torch.ones_like(tp, dtype=torch.bool)),
        "iou": _ratio(tp, tp + fp + fn, torch.ones_like(tp, dtype=torch.bool)),
    }


def cohen_kappa(matrix: torch.Tensor) -> float:
    """Agreement beyond chance, ``(p_o - p_e) / (1 - p_e)``; 1 when label and prediction are one same class."""
    cm = matrix.double().cpu()
    n = cm.sum()
    p_o = cm.diag().sum() / n
    p_e = (cm.sum(0) * cm.sum(1)).sum() / n**2
    return 1.0 if p_e >= 1 else float((p_o - p_e) / (1 - p_e))


def change_metrics(matrix: torch.Tensor) -> dict[str, float]:
    """Flat metrics of a 2-class confusion matrix.

    Keys: ``change_{precision,recall,f1,iou}`` (class 1), ``unchanged_{...}`` (class 0),
    ``mean_{...}`` (their means), ``oa`` (overall accuracy), ``kappa``, ``fpr_unchanged`` (share
    of unchanged pixels predicted as changed) and ``pixels``.
    """
    if matrix.shape != (2, 2):
        raise ValueError(f"change metrics need a 2x2 confusion matrix, got {tuple(matrix.shape)}")
    total = int(matrix.sum())
    if total == 0:
        raise DatasetError("no valid pixel was scored: every label pixel is ignored (check data.ignore_value).")
    scores = class_scores(matrix)
    out: dict[str, float] = {}
    for cls, name in enumerate(("unchanged", "change")):
        out.update({f"{name}_{s}": float(scores[s][cls]) for s in SCORES})
    out.update({f"mean_{s}": float(scores[s].mean()) for s in SCORES})
    cm = matrix.double().cpu()
    out["oa"] = float(cm.diag().sum() / total)
    out["kappa"] = cohen_kappa(matrix)
    unchanged = float(cm[0].sum())
    out["fpr_unchanged"] = float(cm[0, 1] / unchanged) if unchanged > 0 else 0.0
    out["pixels"] = float(total)
    return out
