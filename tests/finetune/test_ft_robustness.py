"""Pseudo-change measures with known answers: flip rate, nuisance-induced false alarms, per-nuisance rows.

The measures must isolate what the nuisance does to the decisions: a detector blind to the second
date flips nothing, and a thresholding detector's induced false alarms are counted by hand. The
counts do not depend on the batch size or on the number of processes.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densechange.datasets import IGNORE_INDEX
from densechange.finetune.deepcl.pseudo_change import nuisance_changes
from densechange.finetune.flips import FlipCounts, flip_metrics
from densechange.finetune.inference.scoring import row_metrics, score_dataset

HERE = Path(__file__).resolve().parent
HELPERS = HERE / "ft_threshold_pairs.py"  # shared with the worker processes below


def _load(path):
    spec = importlib.util.spec_from_file_location("ft_threshold_pairs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _load(HELPERS)
FirstDatePredictor, Pairs, ThresholdPredictor = _helpers.FirstDatePredictor, _helpers.Pairs, _helpers.ThresholdPredictor
settings = _helpers.settings
REPO = HERE.parents[1]
ROWS = ["clean", "pseudo_change", "pseudo_change_colour", "pseudo_change_blur", "pseudo_change_shift"]


def test_flip_metrics_by_hand():
    fc = FlipCounts()
    label = torch.tensor([0, 0, 0, 0, 1, 1, 1, IGNORE_INDEX])
    clean = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    noisy = torch.tensor([0, 1, 1, 0, 1, 0, 1, 0])
    fc.update(clean, noisy, label)
    assert fc.counts.sum() == 7 and fc.counts[0, 0, 1] == 2
    m = flip_metrics(fc.counts)
    # unchanged & clean-unchanged: 3 pixels, 2 called changed under the nuisance; found changes: 2, 1 lost
    assert m == {"flip_rate": pytest.approx(5 / 7), "induced_false_alarms": pytest.approx(2 / 3),
                 "induced_misses": pytest.approx(1 / 2)}
    assert flip_metrics(FlipCounts().counts) == {"flip_rate": 0.0, "induced_false_alarms": 0.0, "induced_misses": 0.0}


def test_a_detector_blind_to_the_second_date_flips_nothing():
    rows = row_metrics(score_dataset(FirstDatePredictor(), Pairs(), settings("each", seed=1)))
    assert list(rows) == ROWS
    for name in ROWS[1:]:
        assert rows[name]["flip_rate"] == 0.0 and rows[name]["induced_false_alarms"] == 0.0
        assert rows[name]["induced_misses"] == 0.0
        assert rows[name]["change_f1"] == rows["clean"]["change_f1"] and rows[name]["auroc"] == rows["clean"]["auroc"]
    assert "flip_rate" not in rows["clean"]


class GreyPair(torch.utils.data.Dataset):
    """One 4x4 pair with identical grey dates, values (k + 0.5) / 16 for pixel k; pixels 0 and 9 changed, 15 ignored."""

    def __len__(self):
        return 1

    def __getitem__(self, i):
        x = ((torch.arange(16, dtype=torch.float32) + 0.5) / 16).view(1, 4, 4).expand(3, 4, 4).clone()
        label = torch.zeros(16, dtype=torch.long)
        label[[0, 9]], label[15] = 1, IGNORE_INDEX
        return {"a": x, "b": x.clone(), "label": label.view(4, 4), "name": "grey"}


def test_induced_false_alarms_of_a_thresholding_detector_by_hand():
    # Brightness x1.5 alone on the second date; the detector calls |A - B| > 0.25 in band 0, and the
    # clean pair (identical dates) calls nothing. |x - min(1.5x, 1)| > 0.25 for 0.5 < x < 0.75: pixels 8-11.
    nuisance = {"brightness": (1.5, 1.5), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0), "hue": 0.0}
    rows = row_metrics(score_dataset(ThresholdPredictor(threshold=0.25), GreyPair(), settings("each", **nuisance)))
    colour = rows["pseudo_change_colour"]
    # 13 unchanged pixels (16 - 2 changed - 1 ignored), all called unchanged on the clean pair; 8, 10, 11 flip
    assert colour["induced_false_alarms"] == pytest.approx(3 / 13)
    assert colour["flip_rate"] == pytest.approx(4 / 15)  # 8, 9, 10, 11 of the 15 scored pixels
    assert colour["induced_misses"] == 0.0  # the clean pair found no change to lose
    assert colour["fpr_unchanged"] == pytest.approx(3 / 13) and rows["clean"]["fpr_unchanged"] == 0.0
    assert rows["pseudo_change_blur"]["flip_rate"] < colour["flip_rate"]  # a 4x4 ramp blurred moves little


def test_single_nuisances_are_the_parts_of_all_of_them():
    b = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(4))
    g = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    together = nuisance_changes(b, g())
    stepwise = nuisance_changes(nuisance_changes(nuisance_changes(b, g(), ("colour",)), g(), ("blur",)), g(), ("shift",))
    assert torch.allclose(together, stepwise, atol=1e-6)
    assert not torch.equal(nuisance_changes(b, g(), ("blur",)), b) and torch.equal(nuisance_changes(b, g(), ()), b)
    with pytest.raises(ValueError, match="unknown nuisance"):
        nuisance_changes(b, g(), ("haze",))


def _flat(scores):
    return {name: {"confusion": s.confusion.matrix.tolist(), "histogram": s.histogram.counts.tolist(),
                   "flips": None if s.flips is None else s.flips.counts.tolist()} for name, s in scores.items()}


def test_counts_do_not_depend_on_the_batch_size():
    runs = [_flat(score_dataset(ThresholdPredictor(batch_size=n), Pairs(), settings("each", seed=3, max_shift=1)))
            for n in (1, 2, 4)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0]["pseudo_change"]["flips"] != [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]


# One process of a gloo group over a FileStore: its shard of the pairs, then the metrics of the summed counts.
WORKER = """
import importlib.util, json, sys
import torch.distributed as dist
spec = importlib.util.spec_from_file_location("ft_threshold_pairs", sys.argv[4])
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
Pairs, ThresholdPredictor, settings = helpers.Pairs, helpers.ThresholdPredictor, helpers.settings
from densechange.finetune.inference.scoring import row_metrics, score_dataset
rank, world, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
try:
    ds = Pairs()
    scores = score_dataset(ThresholdPredictor(batch_size=2), ds, settings("each", seed=3, max_shift=1),
                           indices=range(rank, len(ds), world))
    print(json.dumps(row_metrics(scores)))
finally:
    dist.destroy_process_group()
"""


def test_two_processes_give_the_single_process_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), "2", str(tmp_path / "store"), str(HELPERS)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    single = row_metrics(score_dataset(ThresholdPredictor(batch_size=4), Pairs(), settings("each", seed=3, max_shift=1)))
    assert results[0] == results[1] == json.loads(json.dumps(single))
    assert list(single) == ROWS and 0 < single["pseudo_change"]["flip_rate"] < 1


def test_validation_records_prefix_the_nuisance_rows():
    from densechange.finetune.train import NUISANCE_KEYS, flatten_validation

    rows = row_metrics(score_dataset(ThresholdPredictor(), Pairs(), settings("each", seed=2)))
    record = flatten_validation(rows)
    assert {k: record[k] for k in rows["clean"]} == rows["clean"]
    for prefix, name in (("pc_", "pseudo_change"), ("pc_colour_", "pseudo_change_colour"),
                         ("pc_blur_", "pseudo_change_blur"), ("pc_shift_", "pseudo_change_shift")):
        assert {k: record[prefix + k] for k in NUISANCE_KEYS} == {k: rows[name][k] for k in NUISANCE_KEYS}
    assert len(record) == len(rows["clean"]) + 4 * len(NUISANCE_KEYS)
