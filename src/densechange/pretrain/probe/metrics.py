"""Scores of the dense-feature probes: mIoU of transferred labels, cluster purity and NMI.

Everything is computed from count tables with NumPy, so the numbers can be checked by hand:
a confusion matrix for the kNN label transfer and a label-by-cluster contingency table for
k-means.

Example:
    >>> table = contingency(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]), 2, 2)
    >>> purity(table), nmi(table)
    (1.0, 1.0)
"""
from __future__ import annotations

import numpy as np

__all__ = ["contingency", "purity", "nmi", "entropy", "iou_per_class", "mean_iou"]


def contingency(labels: np.ndarray, clusters: np.ndarray, num_labels: int, num_clusters: int) -> np.ndarray:
    """``(num_labels, num_clusters)`` int64 table: entry ``(l, c)`` counts items with label ``l`` in cluster ``c``.

    A confusion matrix is the same table with predictions as the clusters.
    """
    labels, clusters = np.asarray(labels, np.int64).ravel(), np.asarray(clusters, np.int64).ravel()
    if labels.shape != clusters.shape:
        raise ValueError(f"labels ({labels.size}) and clusters ({clusters.size}) must have one entry per item.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels or clusters.min() < 0 or clusters.max() >= num_clusters):
        raise ValueError(f"ids out of range: labels must lie in [0, {num_labels}) and clusters in [0, {num_clusters}).")
    flat = np.bincount(labels * num_clusters + clusters, minlength=num_labels * num_clusters)
    return flat.reshape(num_labels, num_clusters)


def purity(table: np.ndarray) -> float:
    """Fraction of items whose cluster's majority label is their own label: ``sum_c max_l n_lc / n``."""
    total = table.sum()
    return float(table.max(0).sum() / total) if total else 0.0


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the distribution given by non-negative ``counts``."""
    counts = np.asarray(counts, np.float64).ravel()
    p = counts[counts > 0] / counts.sum() if counts.sum() else counts[:0]
    return float(-(p * np.log(p)).sum())


def nmi(table: np.ndarray) -> float:
    """Normalised mutual information ``I(L; C) / ((H(L) + H(C)) / 2)`` of a contingency table.

    The arithmetic-mean normalisation, as in scikit-learn's default. When both partitions are a
    single group the two agree perfectly and the score is 1; when only one is, it is 0.
    """
    table = np.asarray(table, np.float64)
    n = table.sum()
    if n == 0:
        return 0.0
    h_l, h_c = entropy(table.sum(1)), entropy(table.sum(0))
    if h_l == 0.0 and h_c == 0.0:
        return 1.0
    p = table / n
    outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / outer[nz])).sum())
    return max(0.0, min(1.0, mi / ((h_l + h_c) / 2)))


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class from a ``(truth, prediction)`` confusion matrix; NaN where the class is in neither."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the truth or the prediction."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
