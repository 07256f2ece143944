"""The change probe on hand-made pairs whose answers are known: the pixel-difference baseline, no change
between identical dates, the class-balanced sample, the command, and two processes against one."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.engine.change_sets import synthetic_split
from densechange.datasets.errors import DatasetError
from densechange.engine.errors import ConfigError
from densechange.models import BandMeans
from densechange.pretrain.probe.change import balanced_sample, probe_change, score_pairs
from densechange.pretrain.probe.change_features import pair_cells
from densechange.pretrain.probe.change_head import fit_head
from densechange.pretrain.probe.cli import main
from densechange.pretrain.probe.config import ProbeConfig

HELPERS = Path(__file__).with_name("probe_change_pairs.py")  # shared with the worker processes below


def _helpers():
    spec = importlib.util.spec_from_file_location("probe_change_pairs", HELPERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_pairs = _helpers()
HandPairs, cell_steps, write_folder = _pairs.HandPairs, _pairs.cell_steps, _pairs.write_folder

pytestmark = pytest.mark.numeric  # scores of fitted heads, from CPU kernels
HALF = [0.5] * 3
SUMMARY = re.compile(r"^change_f1=(\d\.\d{4}) change_auroc=(\d\.\d{4})$")
REPO = Path(__file__).resolve().parents[3]


def exact_auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Chance that a changed cell scores above an unchanged one, ties one half, by counting every pair."""
    pos, neg = score[label == 1], score[label == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size))


def test_bands_encoder_gives_the_pixel_difference_baseline():
    """With encoder=bands the head sees each cell's pixel difference, ``2 * step / 255`` (three equal bands).

    The training cells say: changed cells step by 100, unchanged ones by 0, 50 or (rarely) 100. So the
    fitted head calls a cell changed exactly where its difference is the largest step, and its change
    probability ranks cells by their difference: F1 and AUROC are those of thresholding the pixel
    difference between 50 and 100, counted here cell by cell.
    """
    train, test = HandPairs("train", 6), HandPairs("test", 6)
    settings = ProbeConfig(pixels_per_class=40, batch_size=4)
    result = probe_change(BandMeans(3), train, test, mean=HALF, std=HALF, settings=settings, seed=1)
    steps, labels = cell_steps("test", 6)
    called = steps > 75
    tp, fp, fn = int((called & (labels == 1)).sum()), int((called & (labels == 0)).sum()), int((~called & (labels == 1)).sum())
    assert result.test_cells == steps.size == 6 * 64
    assert result.precision == pytest.approx(tp / (tp + fp), abs=1e-12)
    assert result.recall == pytest.approx(tp / (tp + fn), abs=1e-12)
    assert result.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    # Three distinct differences give three probabilities far apart (no two share a histogram bin): exact.
    assert result.auroc == pytest.approx(exact_auroc(steps, labels), abs=1e-9)
    assert 0.5 < result.auroc < 1 and 0 < result.f1 < 1  # the weak changes (step 50) and strong pseudo-changes cost
    assert result.train_cells == (40, 40)


@pytest.mark.parametrize("head", ["logreg", "knn"])
def test_identical_dates_give_no_change(head):
    """A head fitted on real pairs calls nothing changed where both dates are one image."""
    settings = ProbeConfig(pixels_per_class=40, head=head, k=5, batch_size=4)
    same = HandPairs("test", 4, same_dates=True)
    result = probe_change(BandMeans(3), HandPairs("train", 6), same, mean=HALF, std=HALF, settings=settings)
    assert result.f1 == 0.0 and result.recall == 0.0
    # Every cell predicted unchanged: no column of "changed" predictions.
    cells = list(pair_cells(BandMeans(3), HandPairs("train", 6), range(6), mean=HALF, std=HALF, settings=settings))
    sample = balanced_sample(cells, 40, seed=0)
    fitted = fit_head(sample.features, sample.labels, settings=settings)
    confusion, histogram = score_pairs(fitted, pair_cells(BandMeans(3), same, range(4), mean=HALF, std=HALF,
                                                           settings=settings), threshold=0.5)
    assert int(confusion.matrix[:, 1].sum()) == 0 and int(confusion.matrix.sum()) == 4 * 64


def hand_cells(pairs: HandPairs) -> np.ndarray:
    """``(pairs * 64, 9)`` concat features of every cell by hand: ``|A - B|``, ``A``, ``B`` (cell means of the bands)."""
    rows = []
    for i in range(len(pairs)):
        s = pairs[i]
        a, b = [((s[k].double().numpy() - 0.5) / 0.5).reshape(3, 8, 4, 8, 4).mean((2, 4)).reshape(3, 64).T for k in "ab"]
        rows.append(np.concatenate([np.abs(a - b), a, b], 1))
    return np.concatenate(rows)


def test_balanced_sample_has_the_requested_counts_seeded():
    """Per class, the cells with the smallest keys drawn from ``(seed, pair index)``, whatever the batching."""
    pairs = HandPairs("train", 7)

    def sample(per_class, seed, batch_size=3):
        s = ProbeConfig(batch_size=batch_size, features="concat")
        return balanced_sample(pair_cells(BandMeans(3), pairs, range(7), mean=HALF, std=HALF, settings=s), per_class, seed)

    _, labels = cell_steps("train", 7)
    first = sample(30, seed=4)
    assert np.bincount(first.labels).tolist() == [30, 30]
    # By hand: every cell's key from its pair's generator; per class the 30 smallest, listed by pair, then key.
    keys = np.concatenate([np.random.default_rng([4, i]).random(64) for i in range(7)])
    cells, pair_of = hand_cells(pairs), np.arange(7 * 64) // 64
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        chosen = members[np.argsort(keys[members])[:30]]
        chosen = chosen[np.lexsort((keys[chosen], pair_of[chosen]))]
        assert np.array_equal(first.images[first.labels == c], pair_of[chosen])
        np.testing.assert_allclose(first.features[first.labels == c], cells[chosen], rtol=0, atol=1e-6)  # float32 means
    again, other, batched = sample(30, seed=4), sample(30, seed=5), sample(30, seed=4, batch_size=7)
    assert np.array_equal(first.features, again.features) and np.array_equal(first.images, again.images)
    assert np.array_equal(first.features, batched.features) and np.array_equal(first.images, batched.images)
    assert not np.array_equal(first.features, other.features)
    every = sample(10_000, seed=4)  # fewer cells than asked: every cell of each class
    assert np.bincount(every.labels).tolist() == np.bincount(labels).tolist()


def test_command_on_a_change_folder(tmp_path, capsys):
    """``densechange probe task=change`` on PNG pairs in A/, B/, label/ with list files: the library call on the same pairs."""
    root = write_folder(tmp_path / "pairs", {"train": 6, "test": 6})
    assert main(["task=change", "encoder=bands", f"data.root={root}", "probe.pixels_per_class=40", "probe.batch_size=4",
                 "seed=1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    expected = probe_change(BandMeans(3), HandPairs("train", 6), HandPairs("test", 6), mean=HALF, std=HALF,
                            settings=ProbeConfig(pixels_per_class=40, batch_size=4), seed=1)
    assert out[-1] == expected.summary()
    assert "6 training samples (40 unchanged + 40 changed cells sampled), 6 test samples (384 cells)" in out[0]


@pytest.mark.parametrize("args, error, message", [
    (["encoder=random", "model.backbone=test_resnet", "model.neck_channels=8", "probe.stride=2"], ConfigError,
     "strides [4, 8, 16, 32]"),
    (["encoder=bands", "probe.head=svm"], ConfigError, "valid values"),
    (["encoder=bands", "data.in_chans=4"], ConfigError, "data.in_chans=4"),
    (["encoder=bands", "data.split=dev"], ConfigError, "got split 'dev'"),  # synthetic: train, val or test
    (["encoder=bands", "data.test_split=train"], ConfigError, "data.split=train and data.test_split=train"),
    (["encoder=bands", "probe.stride=32"], DatasetError, "has no changed cell"),  # 2x2 cells of 64x64 pairs
])
def test_bad_change_input_names_the_problem(args, error, message):
    common = ["task=change", "data.root=synthetic", "data.synthetic_size=64", "data.synthetic_images=2"]
    with pytest.raises(error, match=re.escape(message)):
        main(common + args)


# One process of a gloo group over a FileStore: the change probe of both heads on its shard, printed as JSON.
WORKER = """
import importlib.util, json, sys
import torch.distributed as dist
from densechange.models import BandMeans
from densechange.pretrain.probe.change import probe_change
from densechange.pretrain.probe.config import ProbeConfig
rank, world, store, helpers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = importlib.util.spec_from_file_location("probe_change_pairs", helpers)
pairs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pairs)
dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
try:
    out = {}
    for head in ("logreg", "knn"):
        settings = ProbeConfig(pixels_per_class=40, batch_size=2, head=head, k=5, features="concat")
        r = probe_change(BandMeans(3), pairs.HandPairs("train", 7), pairs.HandPairs("test", 5), mean=[0.5] * 3,
                         std=[0.5] * 3, settings=settings, seed=2)
        out[head] = {**r.metrics(), "train_cells": list(r.train_cells)}
    print(json.dumps(out))
finally:
    dist.destroy_process_group()
"""


def test_two_processes_equal_one(tmp_path):
    """Shards of the pairs in two processes: the same sample, head and summed counts as one process.

    Each process featurises whole batches (shards are chunks of ``probe.batch_size`` pairs), so the
    features, the gathered sample and the fitted head are those of one process; the scores agree to
    float64 rounding (1e-12), and the counts exactly.
    """
    store, world = str(tmp_path / "store"), 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(world), store, str(HELPERS)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(world)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for head in ("logreg", "knn"):
        settings = ProbeConfig(pixels_per_class=40, batch_size=2, head=head, k=5, features="concat")
        one = probe_change(BandMeans(3), HandPairs("train", 7), HandPairs("test", 5), mean=HALF, std=HALF,
                           settings=settings, seed=2)
        for r in results:  # every process gets the scores
            assert r[head]["train_cells"] == list(one.train_cells) == [40, 40]
            assert r[head]["change_test_cells"] == one.test_cells == 5 * 64
            for key, value in one.metrics().items():
                assert r[head][key] == pytest.approx(value, abs=1e-12), (head, key)
