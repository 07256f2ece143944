"""Pixel selection and batched feature extraction of the probes, with a transparent toy encoder."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densechange.datasets import IGNORE_INDEX
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import centre_labels, extract_pixels, select_cells, shape_batches


class Pool4(nn.Module):
    """A stand-in encoder whose stride-4 features are 4x4 means of the (normalised) image."""

    def forward(self, x):
        return F.avg_pool2d(x, 4, ceil_mode=True)


def sample(image, mask):
    return {"image": torch.as_tensor(image, dtype=torch.float32), "mask": torch.as_tensor(mask, dtype=torch.long)}


def test_centre_labels_reads_the_centre_pixel_of_each_cell():
    mask = torch.arange(64).view(1, 8, 8)
    # A 2x2 grid over 8x8 pixels: cell centres are pixels (2, 2), (2, 6), (6, 2), (6, 6).
    assert centre_labels(mask, (2, 2)).tolist() == [[[18, 22], [50, 54]]]
    # A 3x3 grid over 9x9 (odd sizes): centres at rows/cols 1, 4, 7.
    assert centre_labels(torch.arange(81).view(1, 9, 9), (3, 3))[0, 1].tolist() == [37, 40, 43]


def test_select_cells_is_seeded_per_image_and_skips_invalid_cells():
    valid = torch.tensor([[True, False, True, True, False, True], [False, False, True, False, False, False]])
    pos, keep = select_cells(valid, [10, 11], 3, seed=5)
    assert keep.tolist() == [[True, True, True], [True, False, False]]
    assert set(pos[0].tolist()) <= {0, 2, 3, 5} and len(set(pos[0].tolist())) == 3  # without replacement
    assert pos[1, 0].item() == 2
    alone, _ = select_cells(valid[:1], [10], 3, seed=5)  # same image index, other batch: same draw
    assert torch.equal(alone[0], pos[0])
    every, keep_all = select_cells(valid, [10, 11], None, seed=5)
    assert keep_all.sum(1).tolist() == [4, 1]


def test_shape_batches_group_images_of_one_shape():
    data = [sample(torch.zeros(3, 8, 8), torch.zeros(8, 8)), sample(torch.zeros(3, 8, 12), torch.zeros(8, 12)),
            sample(torch.zeros(3, 8, 8), torch.zeros(8, 8)), sample(torch.zeros(3, 8, 8), torch.zeros(8, 8))]
    batches = [(idx, b["image"].shape[-1]) for idx, b in shape_batches(data, batch_size=2)]
    # consecutive images of one shape share a batch: only one batch is ever held in memory
    assert batches == [([0], 8), ([1], 12), ([2, 3], 8)]


def test_extract_pixels_matches_the_toy_encoder_exactly():
    # Image 0: left half 1 / right half 0, mask = left half (class 1), with the top-left cell ignored.
    # Image 1: an empty mask (all background) still gives pixels. Image 2: every pixel ignored.
    img0 = torch.zeros(1, 8, 8)
    img0[:, :, :4] = 1.0
    mask0 = torch.zeros(8, 8, dtype=torch.long)
    mask0[:, :4] = 1
    mask0[2, 2] = IGNORE_INDEX
    data = [sample(img0, mask0), sample(torch.full((1, 8, 8), 0.5), torch.zeros(8, 8)),
            sample(torch.zeros(1, 8, 8), torch.full((8, 8), IGNORE_INDEX))]
    every = ProbeConfig(pixels_per_image=None, max_pixels=None, batch_size=2)
    px = extract_pixels(Pool4(), data, mean=[0.0], std=[1.0], settings=every)
    assert px.images.tolist() == [0, 0, 0, 1, 1, 1, 1]
    feats = px.features[:, 0]
    # Image 0: three cells left (top-left ignored): the left one is class 1 with feature 1, the right ones 0 / 0.
    assert sorted(zip(px.labels[:3].tolist(), feats[:3].tolist())) == [(0, 0.0), (0, 0.0), (1, 1.0)]
    assert px.labels[3:].tolist() == [0, 0, 0, 0] and np.allclose(feats[3:], 0.5)
    with pytest.raises(ValueError, match="no images"):
        extract_pixels(Pool4(), [], mean=[0.0], std=[1.0], settings=every)


def test_extract_pixels_is_independent_of_the_batch_size():
    g = torch.Generator().manual_seed(0)
    data = [sample(torch.rand(3, 16, 16, generator=g), torch.randint(0, 3, (16, 16), generator=g)) for _ in range(5)]
    six = ProbeConfig(pixels_per_image=6, max_pixels=None)
    a = extract_pixels(Pool4(), data, mean=[0.5] * 3, std=[0.25] * 3, settings=replace(six, batch_size=1), seed=3)
    b = extract_pixels(Pool4(), data, mean=[0.5] * 3, std=[0.25] * 3, settings=replace(six, batch_size=4), seed=3)
    assert len(a) == 30
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    encoder = Pool4().train()
    extract_pixels(encoder, data, mean=[0.5] * 3, std=[0.25] * 3, settings=replace(six, pixels_per_image=2))
    assert encoder.training  # the caller's mode is restored
