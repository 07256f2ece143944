"""Block-by-block polygons equal whole-raster ones: the cases where seams could split or join a region wrongly.

Geometry is compared exactly: outlines are traced in integer pixel coordinates and put in canonical
form, so the same region gives the same coordinates whichever blocks cut it. Pixel counts and
maxima are exact; probability sums are float64 sums in another order, equal to 1e-12 relative.
"""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio.features import shapes
from shapely.geometry import shape

from densechange.finetune.vector.polygonise import Block, canonical, polygonise

SUM_RTOL = 1e-12  # float64 sums of the same float32 values in another order


def run(mask: np.ndarray, block: int, connectivity: int, prob: np.ndarray | None = None) -> list:
    def read(window):
        rows, cols = window.toslices()
        return Block(mask[rows, cols], None if prob is None else prob[rows, cols])

    found = list(polygonise(read, *mask.shape, block=block, connectivity=connectivity))
    return sorted(found, key=lambda r: shapely.to_wkb(r.geometry))


def reference(mask: np.ndarray, connectivity: int) -> list[shapely.Geometry]:
    """GDAL's polygons of the whole raster at once, in the same canonical form."""
    traced = [shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=connectivity)]
    return sorted(canonical(np.array(traced, dtype=object)), key=shapely.to_wkb) if traced else []


def assert_same(mask: np.ndarray, blocks: tuple[int, ...], connectivity: int, prob: np.ndarray | None = None) -> list:
    whole = run(mask, max(mask.shape), connectivity, prob)
    expected = reference(mask, connectivity)
    assert len(whole) == len(expected)
    assert all(shapely.equals_exact(r.geometry, g, tolerance=0) for r, g in zip(whole, expected))
    assert sum(r.stats.pixels for r in whole) == int(mask.sum())
    for block in blocks:
        streamed = run(mask, block, connectivity, prob)
        assert len(streamed) == len(whole), block
        for s, w in zip(streamed, whole):
            assert shapely.equals_exact(s.geometry, w.geometry, tolerance=0), block
            assert s.stats.pixels == w.stats.pixels
            assert s.stats.prob_max == w.stats.prob_max and s.stats.prob_count == w.stats.prob_count
            assert s.stats.prob_sum == pytest.approx(w.stats.prob_sum, rel=SUM_RTOL)
    return whole


@pytest.mark.parametrize("connectivity", [4, 8])
def test_a_region_over_a_block_corner_is_one_polygon(connectivity):
    yy, xx = np.mgrid[:24, :24]
    mask = (yy - 8) ** 2 + (xx - 8) ** 2 <= 20  # a disk centred on the corner of four 8-pixel blocks
    whole = assert_same(mask, (8, 5, 3), connectivity)
    assert len(whole) == 1 and whole[0].stats.pixels == int(mask.sum())


@pytest.mark.parametrize("connectivity", [4, 8])
def test_a_snake_over_three_blocks_is_one_polygon(connectivity):
    mask = np.zeros((16, 30), bool)
    for i, col in enumerate(range(1, 29, 3)):  # vertical runs joined alternately at the top and the bottom
        mask[1:15, col] = True
        row = 14 if i % 2 == 0 else 1
        mask[row, col:col + 4] = True
    mask[:, 29] = False
    whole = assert_same(mask, (10, 7, 4), connectivity)
    assert len(whole) == 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_rings_with_holes_across_a_seam_keep_their_holes(connectivity):
    yy, xx = np.mgrid[:20, :20]
    r2 = (yy - 10) ** 2 + (xx - 10) ** 2
    mask = (r2 <= 64) & (r2 > 16)  # an annulus centred on the seams of 10-pixel blocks
    mask[9:12, 9:12] = True  # an island inside the hole: a second region
    whole = assert_same(mask, (10, 6), connectivity)
    ring = max(whole, key=lambda r: r.stats.pixels)
    assert len(ring.geometry.geoms) == 1 and len(ring.geometry.geoms[0].interiors) == 1


def test_regions_touching_only_at_a_corner_join_under_8_connectivity_only():
    mask = np.zeros((8, 12), bool)
    mask[3, 3] = mask[4, 4] = True  # across the diagonal of the corner of four 4-pixel blocks
    mask[3, 8] = mask[4, 7] = True  # across the anti-diagonal of the next corner
    mask[0, 3] = mask[1, 4] = True  # across a seam, diagonally
    assert len(assert_same(mask, (4, 1, 2), 4)) == 6
    joined = assert_same(mask, (4, 1, 2), 8)
    assert len(joined) == 3 and all(len(r.geometry.geoms) == 2 for r in joined)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_no_data_splits_regions_the_same_way_in_blocks(connectivity):
    rng = np.random.default_rng(3)
    mask = rng.random((40, 40)) < 0.55
    mask[:, 17] = False  # a no-data column and row read as no change, across the seams
    mask[21, :] = False
    prob = rng.random((40, 40)).astype(np.float32)
    prob[~mask] = np.nan
    assert_same(mask, (16, 9, 5), connectivity, prob)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_random_maps_are_equal_at_every_block_size(connectivity):
    rng = np.random.default_rng(11)
    for _ in range(4):
        h, w = rng.integers(5, 24, 2)
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.7)
        assert_same(mask, (1, 3, 7), connectivity, rng.random((h, w)).astype(np.float32))


def test_an_empty_map_has_no_regions():
    assert run(np.zeros((9, 7), bool), 4, 8) == []
