"""Pseudo-masks: colour-texture features, k-means masks stable for a seed, the image-only dataset."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from densechange.datasets import IGNORE_INDEX
from densechange.datasets.transforms.geometry import apply_geometry, draw_geometry, sample_rng
from densechange.datasets.io.images import write_image
from densechange.pretrain.data import ImageFolder, SyntheticImages
from densechange.pretrain.probe.metrics import contingency, nmi
from densechange.checkpoints.format import CheckpointError
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.datasets.io.images import to_float_image
from densechange.pretrain.pseudo.masks import Centroids, colour_texture_features, compute_pseudo_masks, fit_centroids
from densechange.pretrain.pseudo.store import OUTSIDE, MaskStore, MaskWriter, clear_folder


ASSIGN_ATOL = 1e-4
"""fp32: squared distances of standardised colour-texture features to a centre, computed in batches of another size."""


def colour(x):
    return colour_texture_features(x, 5)


def assignment_ties(source, seed: int, settings: PseudoConfig) -> list[np.ndarray]:
    """Per image, the pixels whose two nearest centres (those ``compute_pseudo_masks`` fits) lie within
    ``ASSIGN_ATOL`` of each other: another batching may give such a pixel either cluster."""
    centroids, _ = fit_centroids(source, colour, settings, seed=seed, generation=0, device=torch.device("cpu"))
    ties = []
    for i in range(len(source)):
        features = colour(to_float_image(source.read(i))[None])[0].permute(1, 2, 0).double().numpy()
        standardised = (features - centroids.shift) / centroids.scale
        distance = np.sort(((standardised[..., None, :] - centroids.centres) ** 2).sum(-1), -1)  # (H, W, K)
        ties.append(distance[..., 1] - distance[..., 0] <= ASSIGN_ATOL)
    return ties


def test_colour_texture_features_by_hand():
    flat = colour_texture_features(torch.full((1, 2, 6, 6), 0.25), window=3)
    assert flat.shape == (1, 7, 6, 6)  # 2 bands + 2 means + 2 stds + gradient
    assert torch.allclose(flat[:, :4], torch.tensor(0.25)) and torch.allclose(flat[:, 4:], torch.tensor(0.0), atol=1e-6)
    step = torch.zeros(1, 1, 5, 6)
    step[..., 3:] = 1.0  # vertical edge between columns 2 and 3
    f = colour_texture_features(step, window=3)
    grad = f[0, 3]
    # Sobel x on a unit step: 1 + 2 + 1 = 4 on both sides of the edge, 0 away from it.
    assert torch.allclose(grad[:, 2:4], torch.tensor(4.0)) and torch.allclose(grad[:, [0, 5]], torch.tensor(0.0))
    assert torch.allclose(f[0, 1, :, 2], torch.tensor(1 / 3))  # local mean of a 3x3 box with one bright column
    assert torch.allclose(f[0, 2, :, 2], torch.tensor((1 / 3 - 1 / 9) ** 0.5))  # its std
    with pytest.raises(ValueError, match="odd"):
        colour_texture_features(step, window=4)


def test_euclidean_assignment_matches_a_plain_reference():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4)).astype(np.float32)
    shift, scale = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    feats = torch.from_numpy(rng.normal(size=(2, 4, 5, 6)).astype(np.float32))
    got = Centroids(centres, False, shift, scale).assign(feats)
    x = (feats.permute(0, 2, 3, 1).numpy() - shift) / scale
    expected = ((x[..., None, :] - centres) ** 2).sum(-1).argmin(-1)
    assert np.array_equal(got.numpy(), expected)


@pytest.mark.numeric
def test_masks_are_stable_for_a_seed_and_ordered_by_cluster_size(tmp_path):
    source = SyntheticImages(4, 64, seed=0)
    settings = PseudoConfig(clusters=3, pixels_per_image=128)
    a = list(compute_pseudo_masks(source, colour, tmp_path / "a", settings, seed=7))
    b = list(compute_pseudo_masks(source, colour, tmp_path / "b", replace(settings, batch_size=3), seed=7))
    assert len(a) == 4 and all(m.shape == (64, 64) and m.dtype == np.uint8 for m in a)
    # same seed, other batching: same masks, but for pixels that two centres claim within fp32 rounding
    ties = assignment_ties(source, seed=7, settings=settings)
    assert all(np.array_equal(x[~t], y[~t]) for x, y, t in zip(a, b, ties)) and sum(t.sum() for t in ties) < 20
    counts = np.bincount(np.concatenate([m.ravel() for m in a]), minlength=3)
    assert set(np.unique(np.concatenate(a)).tolist()) == {0, 1, 2}
    assert counts[0] == counts.max()  # class 0, the background of the synthetic view, is the largest cluster
    with pytest.raises(ValueError, match="pseudo.clusters"):
        PseudoConfig(clusters=1)


@pytest.mark.numeric
def test_max_pixels_fits_on_a_bounded_seeded_subset(tmp_path):
    source = SyntheticImages(4, 64, seed=0)
    settings = PseudoConfig(clusters=2, pixels_per_image=128)
    full = compute_pseudo_masks(source, colour, tmp_path / "full", settings, seed=7)
    capped = compute_pseudo_masks(source, colour, tmp_path / "cap", replace(settings, max_pixels=100), seed=7)
    again = compute_pseudo_masks(source, colour, tmp_path / "again", replace(settings, max_pixels=100, batch_size=1),
                                 seed=7)
    assert full.meta["fitting_pixels"] == 4 * 128 and capped.meta["fitting_pixels"] == 100
    # the subset does not depend on the batching: the same masks but for pixels tied within fp32 rounding
    ties = assignment_ties(source, seed=7, settings=replace(settings, max_pixels=100))
    assert all(np.array_equal(x[~t], y[~t]) for x, y, t in zip(capped, again, ties)) and sum(t.sum() for t in ties) < 20
    table = contingency(np.concatenate([m.ravel() for m in full]), np.concatenate([m.ravel() for m in capped]), 2, 2)
    assert nmi(table) > 0.6  # 100 pixels still find much the same clusters (0.84 here)


def test_colour_clusters_follow_the_scene_classes(tmp_path):
    # Water, vegetation, ground, roads and roofs differ in colour: 5 clusters recover much of the class map.
    from densechange.datasets import SyntheticImageMaskDataset
    from densechange.pretrain.probe.metrics import contingency, nmi

    truth = SyntheticImageMaskDataset(4, size=96, seed=1, classes="all")
    masks = compute_pseudo_masks(SyntheticImages(4, 96, seed=1), colour, tmp_path / "g0", PseudoConfig(clusters=5), seed=0)
    labels = np.concatenate([truth.arrays(i)[1].ravel() for i in range(4)])
    assert nmi(contingency(labels, np.concatenate([m.ravel() for m in masks]), 5, 5)) > 0.2


def test_image_only_folder_and_aligned_crops(tmp_path):
    h, w = 40, 50
    xs = np.broadcast_to(np.arange(w, dtype=np.uint8), (h, w))
    for name in ("t0", "t1"):
        write_image(tmp_path / "A" / f"{name}.png", np.stack([xs, xs, xs], -1))  # red = column index
    source = ImageFolder(tmp_path)  # no label/ folder at all
    assert source.names == ["t0", "t1"] and source.read(1).shape == (h, w, 3)
    ds = PseudoMaskDataset(source, num_classes=3, crop_size=32, seed=4)
    with pytest.raises(RuntimeError, match="set_masks"):
        ds[0]
    ds.set_masks([xs.copy(), xs.copy()], generation=0)  # mask = column index too
    ds.set_epoch(2)
    s = ds[1]
    assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (32, 32)
    assert torch.equal((s["image"][0] * 255).round().long(), s["mask"])  # image and mask cut identically
    geometry = draw_geometry(sample_rng(4, 2, 1), h, w, 32)
    assert torch.equal(s["mask"], torch.from_numpy(apply_geometry(xs.astype(np.int64), geometry, 32, IGNORE_INDEX)))
    with pytest.raises(ValueError, match="no image folder"):
        ImageFolder(tmp_path / "A")


def test_mask_store_reads_windows_across_pieces_and_checks_coverage(tmp_path):
    names = ["big", "small", "wide"]
    sizes = [(70, 90), (20, 30), (32, 100)]
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 6, size, dtype=np.uint8) for size in sizes]
    tile = 32
    folder = tmp_path / "g2"
    clear_folder(folder)
    for rank in (0, 1):  # two processes, each with some windows of the big image
        writer = MaskWriter(folder, rank, {"generation": 2, "epoch": 6, "fitting_pixels": 9, "tile": tile})
        k = 0
        for i, (h, w) in enumerate(sizes):
            for top in range(0, h, tile):
                for left in range(0, w, tile):
                    if k % 2 == rank:
                        writer.add(i, names[i], (h, w), top, left, masks[i][top : top + tile, left : left + tile])
                    k += 1
        writer.flush()
    assert (folder / "0000" / "0000000_32_64.tif").exists() and (folder / "rank00001.json").exists()
    store = MaskStore(folder, names)
    store.verify()
    assert len(store) == 3 and store.generation == 2 and store.meta["fitting_pixels"] == 9
    assert all(np.array_equal(store[i], masks[i]) for i in range(3))
    window = store.read_window(0, 20, 50, 30, 50)  # spans 4 pieces and passes the right edge
    assert np.array_equal(window[:, :40], masks[0][20:50, 50:90]) and (window[:, 40:] == OUTSIDE).all()
    with pytest.raises(ValueError, match="new run.dir"):
        MaskStore(folder, names[:-1] + ["other"])
    piece = folder / "0000" / "0000000_0_32.tif"
    piece.write_bytes(piece.read_bytes()[:-10] + bytes(10))  # changed on disk
    with pytest.raises(ValueError, match="sha256"):
        MaskStore(folder, names).verify()
    (folder / "rank00001.json").unlink()  # the index another node wrote, invisible here
    with pytest.raises(ValueError, match="filesystem"):
        MaskStore(folder, names)
