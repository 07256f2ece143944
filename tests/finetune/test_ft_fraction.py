"""data.fraction: seeded, nested subsets of the training pairs; validation and test are never subsampled."""
import random

import pytest
import torch
from omegaconf import OmegaConf

from densechange.datasets import ChangeDataset
from densechange.datasets.synthetic.samples import write_change_dataset
from densechange.engine.errors import ConfigError
from densechange.engine.runlog import read_jsonl
from densechange.finetune.config import DataConfig
from densechange.finetune.data import PairSubset, evaluation_set, fraction_count, fraction_indices, training_set
from densechange.finetune.train import main

NAMES = [f"tile_{i:03d}" for i in range(50)]


def test_subsets_are_nested_and_seeded():
    chosen = {f: {NAMES[i] for i in fraction_indices(NAMES, f, seed=0)} for f in (0.1, 0.2, 0.5, 1.0)}
    assert [len(chosen[f]) for f in (0.1, 0.2, 0.5, 1.0)] == [5, 10, 25, 50]
    assert chosen[0.1] <= chosen[0.2] <= chosen[0.5] <= chosen[1.0] == set(NAMES)
    again = {NAMES[i] for i in fraction_indices(NAMES, 0.2, seed=0)}
    other = {NAMES[i] for i in fraction_indices(NAMES, 0.2, seed=1)}
    assert again == chosen[0.2] and other != chosen[0.2] and len(other) == 10
    # the subset depends on the names, not on the order in which a folder lists them
    shuffled = NAMES[:]
    random.Random(4).shuffle(shuffled)
    assert {shuffled[i] for i in fraction_indices(shuffled, 0.2, seed=0)} == chosen[0.2]
    assert fraction_indices(NAMES, 0.2, seed=0) == sorted(fraction_indices(NAMES, 0.2, seed=0))  # dataset order


def test_fraction_count_rounds_and_keeps_one_pair():
    assert fraction_count(64, 0.2) == 13 and fraction_count(10, 0.25) == 2 and fraction_count(3, 0.01) == 1
    assert [fraction_count(7, f / 10) for f in range(1, 11)] == sorted(fraction_count(7, f / 10) for f in range(1, 11))
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ConfigError, match="data.fraction"):
            fraction_count(10, bad)


def _data(root, **kw):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), {"root": str(root), "crop_size": 32, **kw})


def test_training_set_is_a_subset_and_evaluation_sets_are_whole(tmp_path):
    root = write_change_dataset(tmp_path / "cd", num_pairs=20, size=32, seed=3)
    full = training_set(_data(root), seed=0)
    half = training_set(_data(root, fraction=0.5, fraction_seed=2), seed=0)
    assert isinstance(half, PairSubset) and len(full) == 12 and len(half) == 6
    assert set(half.names) < set(full.names)
    # a kept pair is the same sample (crop, flips) as in the run on every pair, epoch after epoch
    for epoch in (0, 3):
        full.set_epoch(epoch)
        half.set_epoch(epoch)
        i = full.names.index(half.names[1])
        assert torch.equal(half[1]["a"], full[i]["a"]) and torch.equal(half[1]["label"], full[i]["label"])
    for split in ("val", "test"):
        assert len(evaluation_set(str(root), split, None, 4, 32)) == len(ChangeDataset(root, split)) == 4


def test_run_trains_on_the_subset_and_records_it(tiny_overrides, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*tiny_overrides, "trainer.epochs=1", "data.fraction=0.5", "data.fraction_seed=1",
                 f"run.dir={run_dir}"]) == 0
    lines = (run_dir / "train_pairs.txt").read_text().splitlines()
    assert lines[0].startswith("# 4 of 8 pairs of synthetic (train); data.fraction=0.5 data.fraction_seed=1")
    names = [f"synthetic_{i:05d}" for i in range(8)]
    assert lines[1:] == [names[i] for i in fraction_indices(names, 0.5, seed=1)]
    assert "training on 4 pairs" in capsys.readouterr().out
    assert [r["step"] for r in read_jsonl(run_dir / "log.jsonl")] == [1]  # 4 pairs, batch 4: one step
    assert read_jsonl(run_dir / "metrics.jsonl")[0]["pixels"] == 4 * 64 * 64  # every validation pair
    with pytest.raises(ConfigError, match="data.fraction=0"):
        main([*tiny_overrides, "data.fraction=0", f"run.dir={tmp_path / 'bad'}"])


def test_subset_of_a_dataset_cut_in_several_crops_keeps_their_crops(tmp_path):
    """With a crop plan (several crops per pair), a kept pair brings all its crops, as in the full run."""
    root = write_change_dataset(tmp_path / "cd", num_pairs=10, size=64, seed=5)
    full = training_set(_data(root), seed=0)  # 64² pairs, 32² crops: four crops a pair
    quarter = training_set(_data(root, fraction=0.34, fraction_seed=0), seed=0)
    pairs = len(full.names)
    assert len(full) == 4 * pairs and len(quarter) == 4 * len(quarter.names) and len(quarter.names) == round(0.34 * pairs)
    full.set_epoch(2)
    quarter.set_epoch(2)
    for j in range(len(quarter)):
        sample = quarter[j]
        i = quarter.samples[j]
        assert sample["name"] == full[i]["name"] and torch.equal(sample["a"], full[i]["a"])
    fixed = training_set(_data(root, crops_per_epoch=30, fraction=0.5, fraction_seed=0), seed=0)
    assert len(fixed) == 15  # equal areas: half the pairs carry half of the epoch's crops
