"""Change metrics on known confusion matrices, including the empty-change and all-change cases."""
import pytest
import torch

from densechange.datasets import IGNORE_INDEX
from densechange.finetune.metrics import ConfusionMatrix, change_metrics, cohen_kappa, format_table, summary_line

pytestmark = pytest.mark.numeric  # metrics of the counts


def cm(tn, fp, fn, tp):
    return torch.tensor([[tn, fp], [fn, tp]])


def test_known_matrix():
    m = change_metrics(cm(tn=90, fp=5, fn=3, tp=2))
    assert m["change_precision"] == pytest.approx(2 / 7)
    assert m["change_recall"] == pytest.approx(2 / 5)
    assert m["change_f1"] == pytest.approx(4 / 12)
    assert m["change_iou"] == pytest.approx(2 / 10)
    assert m["unchanged_precision"] == pytest.approx(90 / 93)
    assert m["unchanged_recall"] == pytest.approx(90 / 95)
    assert m["unchanged_f1"] == pytest.approx(180 / 188)
    assert m["unchanged_iou"] == pytest.approx(90 / 98)
    assert m["mean_f1"] == pytest.approx((4 / 12 + 180 / 188) / 2)
    assert m["mean_iou"] == pytest.approx((0.2 + 90 / 98) / 2)
    assert m["oa"] == pytest.approx(0.92)
    p_e = (95 * 93 + 5 * 7) / 100**2
    assert m["kappa"] == pytest.approx((0.92 - p_e) / (1 - p_e))
    assert m["fpr_unchanged"] == pytest.approx(5 / 95)
    assert m["pixels"] == 100


def test_perfect_and_inverted_predictions():
    perfect = change_metrics(cm(tn=60, fp=0, fn=0, tp=40))
    assert perfect["change_f1"] == perfect["oa"] == perfect["kappa"] == perfect["mean_iou"] == 1.0
    inverted = change_metrics(cm(tn=0, fp=50, fn=50, tp=0))
    assert inverted["change_f1"] == inverted["oa"] == 0.0
    assert inverted["kappa"] == pytest.approx(-1.0)


def test_no_change_anywhere_and_none_predicted_is_perfect():
    m = change_metrics(cm(tn=100, fp=0, fn=0, tp=0))
    assert m["change_precision"] == m["change_recall"] == m["change_f1"] == m["change_iou"] == 1.0
    assert m["oa"] == 1.0 and m["kappa"] == 1.0 and m["fpr_unchanged"] == 0.0


def test_no_change_in_labels_but_false_alarms():
    m = change_metrics(cm(tn=90, fp=10, fn=0, tp=0))
    assert m["change_precision"] == 0.0  # every predicted change is wrong
    assert m["change_recall"] == 0.0  # 0/0, and the class is not absent from both sides
    assert m["change_f1"] == 0.0 and m["change_iou"] == 0.0
    assert m["fpr_unchanged"] == pytest.approx(0.1)
    assert m["kappa"] == pytest.approx(0.0)  # p_o = p_e = 0.9


def test_all_change():
    m = change_metrics(cm(tn=0, fp=0, fn=0, tp=100))
    assert m["change_f1"] == 1.0 and m["unchanged_f1"] == 1.0 and m["kappa"] == 1.0
    assert m["fpr_unchanged"] == 0.0  # no unchanged pixel to mislabel
    missed = change_metrics(cm(tn=0, fp=0, fn=100, tp=0))  # all change, none found
    assert missed["change_recall"] == 0.0 and missed["change_precision"] == 0.0 and missed["change_f1"] == 0.0
    assert missed["unchanged_precision"] == 0.0 and missed["unchanged_recall"] == 0.0  # 0/0 with false alarms
    assert missed["oa"] == 0.0 and missed["kappa"] == 0.0


def test_empty_matrix_is_an_error():
    with pytest.raises(ValueError, match="no valid pixel"):
        change_metrics(torch.zeros(2, 2, dtype=torch.long))


def test_confusion_matrix_accumulates_and_skips_ignored():
    acc = ConfusionMatrix()
    label = torch.tensor([[0, 0, 1, 1, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1, 0, 1]])
    acc.update(pred, label)
    acc.update(pred, label)
    assert acc.matrix.tolist() == [[2, 2], [2, 2]]
    assert acc.all_reduce().matrix.tolist() == [[2, 2], [2, 2]]  # one process: unchanged
    with pytest.raises(ValueError, match="shape"):
        acc.update(pred[:, :2], label)


def test_kappa_matches_a_plain_reference():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        matrix = torch.randint(0, 50, (2, 2), generator=g)
        n = matrix.sum().item()
        p_o = (matrix[0, 0] + matrix[1, 1]).item() / n
        p_e = sum(matrix[k].sum().item() * matrix[:, k].sum().item() for k in range(2)) / n**2
        assert cohen_kappa(matrix) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_table_names_the_change_class():
    m = change_metrics(cm(tn=90, fp=5, fn=3, tp=2))
    table = format_table({"clean": m})
    change_row = next(line for line in table.splitlines() if "change class" in line)
    assert f"{2 / 7:.4f}" in change_row and f"{1 / 3:.4f}" in change_row
    assert summary_line(m) == f"F1=0.3333 IoU=0.2000 P=0.2857 R=0.4000 OA=0.9200 kappa={m['kappa']:.4f}"


def test_out_of_range_labels_are_named():
    import pytest
    import torch

    from densechange.finetune.metrics import ConfusionMatrix

    with pytest.raises(ValueError, match=r"label values \[2\]"):
        ConfusionMatrix(2).update(torch.tensor([0, 1, 1]), torch.tensor([0, 2, 1]))
