"""Bounded, seeded pixel samples: shards, the running smallest-key set, the gathered sample."""
import numpy as np
import pytest
import torch

from densechange.datasets import SyntheticImageMaskDataset
from densechange.pretrain.probe.pixel_sample import SmallestKeys, gather_sample, shard_indices
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import extract_pixels


def test_shards_deal_whole_chunks_round_robin():
    assert shard_indices(7, 0, 2, 2) == [0, 1, 4, 5] and shard_indices(7, 1, 2, 2) == [2, 3, 6]
    for n, world, chunk in ((7, 2, 2), (10, 3, 4), (2, 4, 1)):
        shards = [shard_indices(n, r, world, chunk) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n))  # a partition
    assert shard_indices(3, 1, 2, 8) == []  # fewer chunks than processes: some shards are empty


def test_smallest_keys_stay_bounded_and_exact():
    rng = np.random.default_rng(0)
    keys = torch.from_numpy(rng.random(1000))
    sample = SmallestKeys(limit=50)
    for part in keys.split(70):  # pruned as rows pile up
        sample.add(part, value=part * 2)
        assert sample.rows <= 2 * 50
    rows = gather_sample(sample)
    assert rows["total"] == 50
    assert torch.equal(rows["key"], keys.sort().values[:50])  # sorted by key when there is no image column
    assert torch.equal(rows["value"], rows["key"] * 2)
    assert gather_sample(SmallestKeys(limit=5)) == {"total": 0}


def test_gathered_sample_is_ordered_by_image_then_key():
    sample = SmallestKeys(limit=None)
    sample.add(torch.tensor([0.5, 0.1, 0.3, 0.2], dtype=torch.float64), image=torch.tensor([2, 2, 0, 1]))
    rows = gather_sample(sample)
    assert rows["image"].tolist() == [0, 1, 2, 2] and rows["key"].tolist() == [0.3, 0.2, 0.1, 0.5]


BATCHING_ATOL = 1e-6  # fp32: the 4x4x3 convolution below, run on batches of 4 images or of 1


@pytest.mark.numeric
def test_max_pixels_keeps_a_seeded_subset_of_the_per_image_draw():
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(3, 4, 4, stride=4)
    data = SyntheticImageMaskDataset(6, size=32, seed=2)
    kwargs = dict(mean=[0.5] * 3, std=[0.5] * 3, seed=3)
    every = extract_pixels(encoder, data, settings=ProbeConfig(pixels_per_image=20, max_pixels=None, batch_size=4), **kwargs)
    capped = extract_pixels(encoder, data, settings=ProbeConfig(pixels_per_image=20, max_pixels=50, batch_size=4), **kwargs)
    again = extract_pixels(encoder, data, settings=ProbeConfig(pixels_per_image=20, max_pixels=50, batch_size=1), **kwargs)
    assert len(every) == 6 * 20 and len(capped) == 50
    assert np.array_equal(capped.images, again.images) and np.array_equal(capped.labels, again.labels)  # same cells
    np.testing.assert_allclose(capped.features, again.features, rtol=0, atol=BATCHING_ATOL)  # other batches, same values
    assert np.all(np.diff(capped.images) >= 0)  # ordered by image
    rows = {tuple(r) for r in every.features.round(5)}
    assert all(tuple(r) in rows for r in capped.features.round(5))  # a subset of the uncapped draw
    assert len(np.unique(capped.images)) > 3  # spread over the images, not the first ones
