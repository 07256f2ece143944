"""``densechange stack``: a VRT that GDAL reads as A's bands then B's, on A's grid."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

from densechange.datasets import DatasetError
from densechange.datasets.tools.stack import stack_pair

UTM = rasterio.crs.CRS.from_epsg(32633)


def write(path: Path, arr: np.ndarray, transform=from_origin(500000, 4650000, 0.5, 0.5), crs=UTM, **extra) -> Path:
    """``arr`` (C, H, W) as a GeoTIFF (no CRS or transform when ``crs`` is None)."""
    profile = dict(driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0], dtype=arr.dtype.name)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, **extra) as dst:
        dst.write(arr)
    return path


def pair(tmp_path: Path, dtype=np.uint8, bands=3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, np.iinfo(dtype).max, (bands, 24, 40), dtype=dtype)
    b = rng.integers(0, np.iinfo(dtype).max, (bands, 24, 40), dtype=dtype)
    return a, b


def test_same_grid_stacks_a_then_b_with_a_georeferencing(tmp_path):
    a, b = pair(tmp_path, np.uint16, bands=4)
    write(tmp_path / "t1.tif", a, nodata=65535)
    write(tmp_path / "t2.tif", b)
    report = stack_pair(tmp_path / "t1.tif", tmp_path / "t2.tif", tmp_path / "pair.vrt")
    assert report.bands == 8 and report.warped is None and report.note is None
    with rasterio.open(tmp_path / "pair.vrt") as src:
        assert src.count == 8 and src.dtypes == ("uint16",) * 8
        assert np.array_equal(src.read(), np.concatenate([a, b]))
        assert src.crs == UTM and src.transform == from_origin(500000, 4650000, 0.5, 0.5)
        assert src.nodatavals == (65535.0,) * 4 + (None,) * 4  # each date keeps its own no-data
        assert src.descriptions[0] == "A band 1 (t1.tif)" and src.descriptions[7] == "B band 4 (t2.tif)"
    assert not list(tmp_path.glob(".pair.vrt*"))  # no temporary file left behind


def test_the_stack_moves_with_its_rasters(tmp_path):
    """Sources in the VRT's folder are referenced relative to it, so copying the folder keeps a readable stack."""
    a, b = pair(tmp_path)
    (tmp_path / "src").mkdir()
    write(tmp_path / "src" / "t1.tif", a)
    write(tmp_path / "src" / "t2.tif", b)
    stack_pair(tmp_path / "src" / "t1.tif", tmp_path / "src" / "t2.tif", tmp_path / "src" / "pair.vrt")
    shutil.copytree(tmp_path / "src", tmp_path / "moved")
    shutil.rmtree(tmp_path / "src")
    with rasterio.open(tmp_path / "moved" / "pair.vrt") as src:
        assert np.array_equal(src.read(), np.concatenate([a, b]))


def test_b_on_another_grid_is_warped_onto_a(tmp_path):
    a, _ = pair(tmp_path)
    rng = np.random.default_rng(1)
    b = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    write(tmp_path / "t1.tif", a)
    write(tmp_path / "t2.tif", b, transform=from_origin(500002, 4649998, 0.75, 0.75))
    report = stack_pair(tmp_path / "t1.tif", tmp_path / "t2.tif", tmp_path / "out" / "pair.vrt")
    assert report.warped == tmp_path / "out" / "pair_b_on_a.vrt" and "resampled bilinearly" in report.note
    with rasterio.open(tmp_path / "t1.tif") as ra, rasterio.open(tmp_path / "t2.tif") as rb, \
            WarpedVRT(rb, crs=ra.crs, transform=ra.transform, width=ra.width, height=ra.height,
                      resampling=Resampling.bilinear) as on_a, rasterio.open(report.path) as src:
        expected_b = on_a.read()
        assert src.count == 6 and (src.height, src.width) == (24, 40)
        assert np.array_equal(src.read(indexes=[1, 2, 3]), a)
        assert np.array_equal(src.read(indexes=[4, 5, 6]), expected_b)
        assert src.descriptions[3] == "B band 1 (t2.tif)"
    assert (expected_b[:, :2] == 0).all() and expected_b[:, 5:15, 5:15].any()  # outside B's footprint: 0


def test_plain_images_of_one_size_stack_without_georeferencing(tmp_path):
    a, b = pair(tmp_path)
    write(tmp_path / "t1.tif", a, crs=None)
    write(tmp_path / "t2.tif", b, crs=None)
    stack_pair(tmp_path / "t1.tif", tmp_path / "t2.tif", tmp_path / "pair.vrt")
    with rasterio.open(tmp_path / "pair.vrt") as src:
        assert src.crs is None and np.array_equal(src.read(), np.concatenate([a, b]))


def test_pairs_that_cannot_be_stacked_are_named(tmp_path):
    a, b = pair(tmp_path)
    write(tmp_path / "t1.tif", a)
    write(tmp_path / "two_bands.tif", b[:2])
    with pytest.raises(DatasetError, match="3 bands.*two_bands.tif has 2"):
        stack_pair(tmp_path / "t1.tif", tmp_path / "two_bands.tif", tmp_path / "pair.vrt")
    write(tmp_path / "far.tif", b, transform=from_origin(900000, 4650000, 0.5, 0.5))
    with pytest.raises(DatasetError, match="do not overlap"):
        stack_pair(tmp_path / "t1.tif", tmp_path / "far.tif", tmp_path / "pair.vrt")
    write(tmp_path / "plain.tif", b[:, :20], crs=None)
    with pytest.raises(DatasetError, match="not both georeferenced"):
        stack_pair(tmp_path / "t1.tif", tmp_path / "plain.tif", tmp_path / "pair.vrt")
    with pytest.raises(DatasetError, match="name it .vrt"):
        stack_pair(tmp_path / "t1.tif", tmp_path / "t1.tif", tmp_path / "pair.tif")
    assert not (tmp_path / "pair.vrt").exists()


def test_command_line(tmp_path, capsys, cli):
    a, b = pair(tmp_path)
    write(tmp_path / "t1.tif", a)
    write(tmp_path / "t2.tif", b)
    # the suite's one ``densechange stack`` in a process of its own, through the console script
    done = subprocess.run([str(Path(sys.executable).parent / "densechange"), "stack", str(tmp_path / "t1.tif"),
                           str(tmp_path / "t2.tif"), str(tmp_path / "p.vrt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "6 bands, 1-3 from" in done.stdout
    with rasterio.open(tmp_path / "p.vrt") as vrt:
        assert np.array_equal(vrt.read(), np.concatenate([a, b]))
    assert cli(["stack", str(tmp_path / "t1.tif"), str(tmp_path / "missing.tif"), str(tmp_path / "q.vrt")]) == 2
    assert "missing.tif: file not found" in capsys.readouterr().err
