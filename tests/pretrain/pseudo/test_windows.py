"""Pseudo-masks by window: the plan, the split by area, and masks equal to whole-image masks."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from densechange.models import Encoder
from densechange.pretrain.data import SyntheticImages
from densechange.pretrain.pseudo.masks import (Centroids, colour_texture, colour_texture_features, encoder_featuriser,
                                               fit_centroids, write_masks)
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.store import MaskStore
from densechange.pretrain.pseudo.windows import plan_batches, plan_windows, split_by_area


def test_windows_cover_each_image_once_with_a_clipped_halo():
    windows = plan_windows([(100, 70), (20, 30)], tile=32, halo=5)
    assert len(windows) == 4 * 3 + 1 and [w.uid for w in windows] == list(range(13))
    cover = np.zeros((100, 70), int)
    for w in windows[:-1]:
        cover[w.top : w.top + w.height, w.left : w.left + w.width] += 1
    assert (cover == 1).all()
    first, inner, last = windows[0], windows[4], windows[11]
    assert first.read == (0, 0, 37, 37) and first.core_offset == (0, 0)
    assert inner.read == (27, 27, 42, 42) and inner.core_offset == (5, 5)  # row 1, column 1: halo on every side
    assert (last.top, last.left, last.height, last.width) == (96, 64, 4, 6) and last.read == (91, 59, 9, 11)
    assert windows[12].read == (0, 0, 20, 30)  # an image smaller than a tile is one window, read whole


def test_batches_hold_one_geometry_and_do_not_depend_on_processes():
    windows = plan_windows([(160, 160)] * 2, tile=32, halo=4)  # 5 x 5 windows: 3 x 3 inner ones per image
    batches = plan_batches(windows, batch_size=4)
    assert all(len({w.geometry for w in b}) == 1 and len({w.image for w in b}) == 1 and len(b) <= 4 for b in batches)
    assert sorted(w.uid for b in batches for w in b) == list(range(50))
    inner = [b for b in batches if b[0].core_offset == (4, 4) and b[0].read[2:] == (40, 40)]
    assert [len(b) for b in inner] == [4, 4, 1] * 2  # the inner windows of a row and of the next fill one batch


def test_split_by_area_balances_pixels_and_deals_every_item_once():
    rng = np.random.default_rng(0)
    areas = [int(a) for a in rng.integers(1, 100, 500)] + [5000]  # many small items and one large one
    shares = [split_by_area(areas, r, 4) for r in range(4)]
    assert sorted(i for s in shares for i in s) == list(range(len(areas)))
    assert all(s == list(range(s[0], s[-1] + 1)) for s in shares)  # contiguous runs
    loads = [sum(areas[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 5000  # within one item of each other
    # One scene's windows spread over the ranks instead of landing on one.
    windows = plan_windows([(2048, 2048), (256, 256), (256, 256)], tile=512, halo=0)
    batches = plan_batches(windows, batch_size=1)
    owners = [r for r in range(4) for i in split_by_area([w.area for b in batches for w in b], r, 4)
              if batches[i][0].image == 0]
    assert sorted(set(owners)) == [0, 1, 2, 3]
    assert split_by_area([], 0, 2) == [] and split_by_area([3], 0, 2) + split_by_area([3], 1, 2) == [0]
    with pytest.raises(ValueError):
        split_by_area([1], 2, 2)


def whole_image_masks(source, featurise, centroids):
    """The reference: every image featurised whole, each pixel labelled by its stride-s cell."""
    out = []
    for i in range(len(source)):
        image = torch.from_numpy(source.read(i).transpose(2, 0, 1).astype(np.float32) / 255)[None]
        feats = featurise(image)
        s = image.shape[-1] // feats.shape[-1]
        ids = centroids.assign(feats)[0]
        out.append(ids.repeat_interleave(s, 0).repeat_interleave(s, 1)[: image.shape[-2], : image.shape[-1]].numpy())
    return out


def test_colour_texture_masks_by_window_equal_whole_image_masks(tmp_path):
    source = SyntheticImages(3, 96, seed=1)
    featurise = colour_texture(5)
    settings = PseudoConfig(clusters=4, pixels_per_image=200, max_pixels=None, iters=10, batch_size=4)
    centroids, _ = fit_centroids(source, featurise, settings, seed=0, generation=0, device=torch.device("cpu"))
    reference = whole_image_masks(source, lambda x: colour_texture_features(x, 5), centroids)
    for tile in (32, 64):  # 9 and 4 windows per image (the last ones partial), each read with a halo of 2 pixels
        folder = tmp_path / f"t{tile}"
        write_masks(source, featurise, centroids, folder, {"generation": 0}, replace(settings, batch_size=3, tile=tile),
                    device=torch.device("cpu"))
        store = MaskStore(folder, source.names)
        assert len(store.pieces) == 3 * (-(-96 // tile)) ** 2
        assert all(np.array_equal(store[i], reference[i]) for i in range(3)), tile
    assert len(np.unique(np.concatenate(reference))) == 4


def test_encoder_masks_by_window(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder("test_resnet", neck_channels=16).eval()
    featurise = encoder_featuriser(encoder, [0.5] * 3, [0.5] * 3, halo=64)
    source = SyntheticImages(2, 128, seed=3)
    settings = PseudoConfig(clusters=3, pixels_per_image=100, max_pixels=None, iters=10, batch_size=2)
    centroids, _ = fit_centroids(source, featurise, settings, seed=0, generation=1, device=torch.device("cpu"))
    reference = whole_image_masks(source, featurise, centroids)
    whole = tmp_path / "whole"  # the image fits in one window: exactly the whole-image masks
    write_masks(source, featurise, centroids, whole, {}, replace(settings, tile=128), device=torch.device("cpu"))
    assert all(np.array_equal(MaskStore(whole, source.names)[i], reference[i]) for i in range(2))
    agree = {}
    for halo in (0, 64):  # 4 windows of 64²: without a halo their edges lose the encoder's context
        cut = tmp_path / f"halo{halo}"
        write_masks(source, encoder_featuriser(encoder, [0.5] * 3, [0.5] * 3, halo=halo), centroids, cut, {},
                    replace(settings, tile=64), device=torch.device("cpu"))
        agree[halo] = np.mean([np.mean(MaskStore(cut, source.names)[i] == reference[i]) for i in range(2)])
    assert agree[0] < 0.97 and agree[64] > 0.99, agree  # 0.947 and 1.0 here


def test_a_georeferenced_scene_gets_placed_pieces_and_one_vrt(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from densechange.pretrain.data import ImageFolder
    from densechange.pretrain.pseudo.masks import compute_pseudo_masks

    rng = np.random.default_rng(0)
    (tmp_path / "A").mkdir()
    transform = from_origin(500000, 4650000, 0.5, 0.5)
    with rasterio.open(tmp_path / "A" / "scene.tif", "w", driver="GTiff", height=70, width=100, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(rng.integers(0, 256, (3, 70, 100), dtype=np.uint8))
    source = ImageFolder(tmp_path)
    store = compute_pseudo_masks(source, colour_texture(5), tmp_path / "g0", PseudoConfig(clusters=3, tile=32))
    with rasterio.open(tmp_path / "g0" / "0000" / "0000000_32_64.tif") as piece:
        assert piece.crs.to_epsg() == 32633 and piece.transform == transform @ transform.translation(64, 32)
    with rasterio.open(tmp_path / "g0" / "0000" / "0000000.vrt") as vrt:  # the whole mask as one raster
        assert vrt.crs.to_epsg() == 32633 and vrt.transform == transform and vrt.shape == (70, 100)
        assert np.array_equal(vrt.read(1), store[0])
        assert np.array_equal(vrt.read(1, window=rasterio.windows.Window(50, 20, 30, 40)), store.read_window(0, 20, 50, 40, 30))
