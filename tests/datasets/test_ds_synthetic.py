"""Synthetic scenes and change pairs: determinism, class coverage, real versus pseudo-changes, disk round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.datasets import ChangeDataset, DatasetError, ImageMaskDataset, ImageMaskOptions
from densechange.datasets.synthetic.samples import (
    CLASSES,
    SyntheticChangeDataset,
    SyntheticImageMaskDataset,
    render_change_pair,
    render_scene,
    write_change_dataset,
    write_image_mask_dataset,
)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean((0, 1))) / x.std((0, 1))


def _high_pass(g: np.ndarray) -> np.ndarray:
    return g - (np.roll(g, 1, 0) + np.roll(g, -1, 0) + np.roll(g, 1, 1) + np.roll(g, -1, 1)) / 4


def test_scene_is_deterministic_per_seed() -> None:
    image, classes = render_scene(11, size=96)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert classes.shape == (96, 96) and classes.dtype == np.uint8
    again = render_scene(11, size=96)
    assert np.array_equal(image, again[0]) and np.array_equal(classes, again[1])
    other = render_scene(12, size=96)
    assert not np.array_equal(image, other[0]) and not np.array_equal(classes, other[1])


def test_scenes_cover_every_class() -> None:
    fractions = np.stack([np.bincount(render_scene(s, 128)[1].ravel(), minlength=len(CLASSES)) / 128**2
                          for s in range(8)])
    assert CLASSES == ("background", "building", "road", "vegetation", "water")
    assert (fractions.max(0) > 0.02).all()  # every class is well present somewhere
    assert (fractions[:, 1] > 0.01).all() and (fractions[:, 1] < 0.5).all()  # buildings in every scene
    assert (fractions[:, 0] > 0.1).all()


def test_change_pair_is_deterministic() -> None:
    a, b, change = render_change_pair(4, size=96)
    again = render_change_pair(4, size=96)
    assert all(np.array_equal(x, y) for x, y in zip((a, b, change), again))
    assert not np.array_equal(change, render_change_pair(5, size=96)[2])
    assert a.shape == b.shape == (96, 96, 3) and change.shape == (96, 96) and change.dtype == np.uint8
    assert set(np.unique(change).tolist()) == {0, 1}


def test_labels_mark_real_changes_and_ignore_pseudo_changes() -> None:
    for seed in range(4):
        a, b, change = render_change_pair(seed, size=128)
        _, classes_a = render_scene(seed, size=128)  # the first date shares the scene's layout
        assert 0.005 < change.mean() < 0.3
        # Real changes: after removing global illumination, changed pixels differ more than unchanged ones. Not by
        # far: unchanged ground also changes (season, shadows, view angle, misregistration of a textured scene), as in
        # real pairs (about 1.05 on the LEVIR-CD samples; bench/synthetic_stats.py).
        diff = np.abs(_standardise(a) - _standardise(b)).mean(2)
        assert diff[change == 1].mean() > 1.3 * diff[change == 0].mean()
        # Pseudo-changes: most unchanged pixels still differ in raw values (illumination, season, noise).
        raw = np.abs(a.astype(int) - b.astype(int)).max(2)
        assert (raw[change == 0] > 6).mean() > 0.3
        # Removed buildings are labelled where the first date had buildings.
        assert set(np.unique(classes_a[change == 1]).tolist()) & {1}
        # Misregistration: the second date is shifted by 1-2 pixels against the label's frame.
        ha, hb = _high_pass(a.mean(2))[4:-4, 4:-4], _high_pass(b.mean(2))
        shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
        score = [(ha * hb[4 + dy : 124 + dy, 4 + dx : 124 + dx]).sum() for dy, dx in shifts]
        dy, dx = shifts[int(np.argmax(score))]
        assert 1 <= max(abs(dy), abs(dx)) <= 2


def test_synthetic_image_mask_dataset() -> None:
    ds = SyntheticImageMaskDataset(num_images=3, size=64, seed=2)
    s = ds[1]
    assert len(ds) == 3 and ds.num_classes == 2 and s["name"] == "synthetic_00001"
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert s["mask"].dtype == torch.int64 and set(s["mask"].unique().tolist()) <= {0, 1}
    assert torch.equal(SyntheticImageMaskDataset(3, 64, 2)[1]["image"], s["image"])
    assert not torch.equal(SyntheticImageMaskDataset(3, 64, 3)[1]["image"], s["image"])
    full = SyntheticImageMaskDataset(3, 64, 2, classes="all")
    assert full.num_classes == 5 and torch.equal(full[1]["mask"] == 1, s["mask"] == 1)
    with pytest.raises(DatasetError, match="classes='roads'"):
        SyntheticImageMaskDataset(classes="roads")
    with pytest.raises(IndexError):
        ds[3]


def test_synthetic_change_dataset() -> None:
    ds = SyntheticChangeDataset(num_pairs=2, size=64, seed=1)
    s = ds[0]
    assert set(s) == {"a", "b", "label", "name"} and s["a"].shape == s["b"].shape == (3, 64, 64)
    assert s["label"].dtype == torch.int64 and set(s["label"].unique().tolist()) <= {0, 1}
    assert torch.equal(SyntheticChangeDataset(2, 64, 1)[0]["b"], s["b"])


def test_written_image_mask_dataset_reads_back_exactly(tmp_path: Path) -> None:
    root = write_image_mask_dataset(tmp_path / "im", num_images=5, size=64, seed=3)
    assert root == tmp_path / "im" and sorted(p.name for p in root.iterdir()) == ["A", "label", "list"]
    train, val = ImageMaskDataset(root, "train"), ImageMaskDataset(root, "val")
    assert len(train) == 4 and len(val) == 1 and set(train.names).isdisjoint(val.names)
    memory = SyntheticImageMaskDataset(5, 64, 3)
    disk = ImageMaskDataset(root)
    for i in range(5):
        assert torch.equal(disk[i]["image"], memory[i]["image"]) and torch.equal(disk[i]["mask"], memory[i]["mask"])
    ids = write_image_mask_dataset(tmp_path / "ids", num_images=2, size=64, seed=3, classes="all")
    assert torch.equal(ImageMaskDataset(ids, options=ImageMaskOptions(mask_mode="ids"))[0]["mask"],
                       SyntheticImageMaskDataset(2, 64, 3, "all")[0]["mask"])


def test_written_change_dataset_reads_back_exactly(tmp_path: Path) -> None:
    root = write_change_dataset(tmp_path, num_pairs=5, size=64, seed=2)
    sizes = {split: len(ChangeDataset(root, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 1}
    memory = SyntheticChangeDataset(5, 64, 2)
    test = ChangeDataset(root, "test")
    i = memory.names.index(test.names[0])
    for key in ("a", "b", "label"):
        assert torch.equal(test[0][key], memory[i][key])
