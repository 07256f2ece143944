"""Probe scores against hand-computed contingency tables and confusion matrices."""
import math

import numpy as np
import pytest

from densechange.pretrain.probe.metrics import contingency, entropy, iou_per_class, mean_iou, nmi, purity

pytestmark = pytest.mark.numeric  # probe metrics of the counts


def test_contingency_counts_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([1, 1, 0, 0, 0, 1])
    assert contingency(labels, clusters, 3, 2).tolist() == [[1, 2], [2, 0], [0, 1]]


def test_contingency_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="out of range"):
        contingency(np.array([0, 3]), np.array([0, 0]), 3, 1)


def test_purity_and_nmi_of_an_asymmetric_table():
    table = np.array([[3, 1], [0, 4]])  # 8 items: label 0 -> clusters (3, 1), label 1 -> (0, 4)
    assert purity(table) == pytest.approx((3 + 4) / 8)
    mi = 3 / 8 * math.log(2) + 1 / 8 * math.log(2 / 5) + 4 / 8 * math.log(8 / 5)
    h_labels = math.log(2)
    h_clusters = -(3 / 8 * math.log(3 / 8) + 5 / 8 * math.log(5 / 8))
    assert nmi(table) == pytest.approx(mi / ((h_labels + h_clusters) / 2), abs=1e-12)
    assert nmi(table) == pytest.approx(0.5616, abs=1e-4)


def test_nmi_extremes():
    assert nmi(np.array([[5, 0, 0], [0, 0, 7]])) == pytest.approx(1.0)  # a relabelled perfect clustering
    assert nmi(np.array([[2, 2], [3, 3]])) == pytest.approx(0.0, abs=1e-12)  # clusters independent of labels
    assert nmi(np.array([[4, 0], [4, 0]])) == 0.0  # one cluster for two labels
    assert nmi(np.array([[6]])) == 1.0  # one label, one cluster: they agree
    assert purity(np.array([[2, 2], [3, 3]])) == pytest.approx(6 / 10)


def test_nmi_is_symmetric_and_invariant_to_cluster_order():
    table = np.array([[5, 1, 0], [2, 7, 3]])
    assert nmi(table) == pytest.approx(nmi(table.T), abs=1e-12)
    assert nmi(table) == pytest.approx(nmi(table[:, [2, 0, 1]]), abs=1e-12)


def test_entropy_in_nats():
    assert entropy(np.array([1, 1, 1, 1])) == pytest.approx(math.log(4))
    assert entropy(np.array([0, 9])) == 0.0


def test_iou_from_confusion():
    confusion = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2 in neither truth nor prediction
    iou = iou_per_class(confusion)
    assert iou[0] == pytest.approx(5 / 8) and iou[1] == pytest.approx(2 / 5) and np.isnan(iou[2])
    assert mean_iou(confusion) == pytest.approx((5 / 8 + 2 / 5) / 2)
    assert mean_iou(np.zeros((2, 2))) == 0.0
