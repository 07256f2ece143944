"""Change-detection metrics as tables and summary lines.

The counts and scores (:class:`ConfusionMatrix`, :func:`change_metrics`) live in
:mod:`densechange.engine.confusion`, shared with the change probe of pretraining; they are
re-exported here for finetuning's callers.

Example:
    >>> cm = ConfusionMatrix()
    >>> cm.update(pred, label)            # (B, H, W) long each; IGNORE_INDEX pixels are skipped
    >>> print(format_table({"clean": change_metrics(cm.all_reduce().matrix)}))
"""
from __future__ import annotations

from densechange.engine.confusion import CHANGE, CLASS_NAMES, SCORES, ConfusionMatrix, change_metrics, class_scores, cohen_kappa

__all__ = ["CHANGE", "CLASS_NAMES", "ConfusionMatrix", "change_metrics", "class_scores", "cohen_kappa", "format_table",
           "summary_line"]

_ROWS = (("unchanged", "0 unchanged"), ("change", "1 CHANGED (change class)"), ("mean", "mean of both"))


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one block per evaluation row, one line per class and the mean.

    Args:
        rows: row title -> metrics of :func:`change_metrics`.
    """
    head = f"{'':<15}{'class':<27}{'P':>8}{'R':>8}{'F1':>8}{'IoU':>8}{'OA':>8}{'kappa':>8}"
    lines = [head, "-" * len(head)]
    for title, m in rows.items():
        for i, (key, label) in enumerate(_ROWS):
            scores = "".join(f"{m[f'{key}_{s}']:>8.4f}" for s in SCORES)
            tail = f"{m['oa']:>8.4f}{m['kappa']:>8.4f}" if i == 0 else ""
            lines.append(f"{(title if i == 0 else ''):<15}{label:<27}{scores}{tail}")
    return "\n".join(lines)


def summary_line(m: dict[str, float]) -> str:
    """``F1=.. IoU=.. P=.. R=.. OA=.. kappa=..`` for the change class."""
    return (f"F1={m['change_f1']:.4f} IoU={m['change_iou']:.4f} P={m['change_precision']:.4f} "
            f"R={m['change_recall']:.4f} OA={m['oa']:.4f} kappa={m['kappa']:.4f}")
