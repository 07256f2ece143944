"""Every raster format GDAL reads is an image: each file written with GDAL and read back exactly.

Files are small and generated here (nothing is downloaded); each read is checked against the
values that were written, and a window read against the same crop of a full read.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from PIL import Image
from rasterio.transform import from_origin

from densechange.datasets import IGNORE_INDEX, ChangeDataset, ImageMaskDataset, ImageMaskOptions
from densechange.datasets.io.files import ignored_files, index_folder
from densechange.datasets.io.images import read_image, read_mask
from densechange.datasets.io.raster import WindowRequest, open_raster, raster_info, read_region, read_window

RNG = np.random.default_rng(0)
UTM = rasterio.crs.CRS.from_epsg(32633)


def write(path: Path, arr: np.ndarray, **options) -> Path:
    """Write ``arr`` (H, W, C) with GDAL; ``options`` are creation options (driver, compress, ...)."""
    h, w, c = arr.shape
    profile = dict(driver="GTiff", height=h, width=w, count=c, dtype=arr.dtype.name, crs=UTM,
                   transform=from_origin(500000, 4650000, 0.5, 0.5))
    profile.update(options)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return path


def u16(h=37, w=53, c=6) -> np.ndarray:
    return RNG.integers(0, 65535, (h, w, c), dtype=np.uint16)


@pytest.mark.parametrize("options", [
    dict(compress="lzw"),
    dict(compress="deflate", predictor=2, tiled=True, blockxsize=16, blockysize=16),
    dict(compress="zstd"),
    dict(BIGTIFF="YES", compress="lzw"),
    dict(interleave="band", compress="packbits"),
])
def test_uint16_six_band_geotiff(tmp_path, options):
    arr = u16()
    path = write(tmp_path / "s.tif", arr, **options)
    np.testing.assert_array_equal(read_image(path), arr)
    info = raster_info(path)
    assert (info.height, info.width, info.count, info.dtype) == (37, 53, 6, "uint16")
    assert info.georef.transform == (0.5, 0.0, 500000.0, 0.0, -0.5, 4650000.0)


def test_bigtiff_is_detected(tmp_path):
    arr = u16(c=2)
    path = write(tmp_path / "big.tif", arr, BIGTIFF="YES")
    assert path.read_bytes()[2:4] in (b"\x2b\x00", b"\x00\x2b")  # version 43: BigTIFF
    np.testing.assert_array_equal(read_image(path), arr)


def test_big_endian_float_tiff(tmp_path):
    arr = RNG.normal(size=(20, 30, 4)).astype(np.float32)
    path = write(tmp_path / "be.tif", arr, ENDIANNESS="BIG")
    assert path.read_bytes()[:2] == b"MM"
    np.testing.assert_array_equal(read_image(path), arr)


def test_jpeg_compressed_tiff(tmp_path):
    arr = np.full((64, 64, 3), 120, np.uint8)
    arr[16:48, 16:48] = (30, 200, 90)
    path = write(tmp_path / "j.tif", arr, compress="jpeg", tiled=True, blockxsize=32, blockysize=32)
    out = read_image(path)
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).mean() < 3  # lossy, but close


def test_envi_raw_with_header(tmp_path):
    arr = u16(c=3)
    folder = tmp_path / "A"
    folder.mkdir()
    write(folder / "scene.dat", arr, driver="ENVI")
    assert (folder / "scene.hdr").is_file()
    np.testing.assert_array_equal(read_image(folder / "scene.dat"), arr)
    assert list(index_folder(folder)) == ["scene"] and not ignored_files(folder)  # the .hdr belongs to scene.dat


def test_erdas_img_jpeg2000_and_vrt(tmp_path):
    arr = RNG.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    img = write(tmp_path / "s.img", arr, driver="HFA")
    np.testing.assert_array_equal(read_image(img), arr)
    jp2 = write(tmp_path / "s.jp2", arr, driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    np.testing.assert_array_equal(read_image(jp2), arr)
    vrt = tmp_path / "s.vrt"
    rasterio.shutil.copy(img, vrt, driver="VRT")
    np.testing.assert_array_equal(read_image(vrt), arr)


def test_bmp_image_and_mask(tmp_path):
    arr = RNG.integers(0, 255, (21, 34, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "sar.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "sar.bmp"), arr)
    mask = (RNG.random((21, 34)) > 0.5).astype(np.uint8) * 255
    Image.fromarray(mask).save(tmp_path / "label.bmp")
    np.testing.assert_array_equal(read_mask(tmp_path / "label.bmp"), mask)


def test_palette_png_and_webp(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), idx)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0, 1], [255, 0, 0])
    arr = RNG.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "w.webp", lossless=True)
    np.testing.assert_array_equal(read_image(tmp_path / "w.webp"), arr)


def test_a_file_without_a_known_suffix_is_an_image_when_gdal_opens_it(tmp_path):
    arr = RNG.integers(0, 255, (10, 12, 1), dtype=np.uint8)
    write(tmp_path / "scene_raw", arr, driver="ENVI")  # ENVI raw without an extension, plus scene_raw.hdr
    (tmp_path / "readme.txt").write_text("not a raster")
    (tmp_path / "x.tif.aux.xml").write_text("<PAMDataset/>")
    assert list(index_folder(tmp_path)) == ["scene_raw"]
    assert [p.name for p in ignored_files(tmp_path)] == ["readme.txt"]


@pytest.mark.parametrize("options", [dict(tiled=True, blockxsize=16, blockysize=16, compress="deflate"),
                                     dict(compress="lzw"), dict(driver="ENVI")])
def test_a_window_equals_the_same_crop_of_a_full_read(tmp_path, options):
    arr = u16(70, 90, 3)
    path = write(tmp_path / "s.img" if options.get("driver") == "ENVI" else tmp_path / "s.tif", arr, **options)
    full = read_image(path)
    crop, valid = read_region(path, 13, 29, 40, 50)
    np.testing.assert_array_equal(crop, full[13:53, 29:79])
    assert valid is None
    edge, valid = read_region(path, 50, 70, 40, 40)  # past the corner: zero-filled and invalid
    np.testing.assert_array_equal(edge[:20, :20], full[50:, 70:])
    assert (edge[20:] == 0).all() and valid[:20, :20].all() and not valid[20:].any() and not valid[:, 20:].any()
    with open_raster(path) as src:
        padded, _ = read_window(src, WindowRequest(60, 80, 16, 16, pad="edge"))
    np.testing.assert_array_equal(padded[:10, :10], full[60:, 80:])
    np.testing.assert_array_equal(padded[12, 12], full[-1, -1])


def test_truncated_tiff_is_a_clear_error(tmp_path):
    path = write(tmp_path / "t.tif", u16(), compress="deflate", tiled=True, blockxsize=16, blockysize=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="t.tif: cannot decode the pixels"):
        read_image(path)


def test_nodata_becomes_ignored_in_training_and_evaluation(tmp_path):
    img = RNG.integers(1, 255, (40, 40, 3), dtype=np.uint8)
    img[:10] = 0  # no-data band at the top
    mask = np.zeros((40, 40, 1), np.uint8)
    mask[20:30, 20:30] = 255
    for sub in ("A", "label"):
        (tmp_path / "im" / sub).mkdir(parents=True)
    write(tmp_path / "im" / "A" / "t.tif", img, nodata=0)
    write(tmp_path / "im" / "label" / "t.tif", mask)
    sample = ImageMaskDataset(tmp_path / "im")[0]
    assert (sample["mask"][:10] == IGNORE_INDEX).all() and (sample["mask"][10:] >= 0).all()
    crop = ImageMaskDataset(tmp_path / "im", options=ImageMaskOptions(crop_size=32, seed=3))[0]  # read as a window: no-data still ignored
    assert torch.equal(crop["mask"] == IGNORE_INDEX, (crop["image"] == 0).all(0))
    b = img.copy()
    b[:, :5] = 0
    for sub in ("A", "B", "label"):
        (tmp_path / "cd" / sub).mkdir(parents=True)
    write(tmp_path / "cd" / "A" / "t.tif", img, nodata=0)
    write(tmp_path / "cd" / "B" / "t.tif", b, nodata=0)
    write(tmp_path / "cd" / "label" / "t.tif", mask)
    pair = ChangeDataset(tmp_path / "cd")[0]
    expect = torch.ones(40, 40, dtype=torch.bool)
    expect[:10] = False
    expect[:, :5] = False
    assert torch.equal(pair["label"] != IGNORE_INDEX, expect)


def test_tile_round_trip_keeps_pixels_georeferencing_and_splits(tmp_path):
    src = tmp_path / "cd"
    for sub in ("A", "B", "label", "list"):
        (src / sub).mkdir(parents=True)
    scenes = {}
    for name, (h, w) in {"s1": (300, 410), "s2": (200, 200)}.items():
        a, b = u16(h, w, 4), u16(h, w, 4)
        label = (RNG.random((h, w, 1)) > 0.7).astype(np.uint8) * 255
        write(src / "A" / f"{name}.tif", a, compress="lzw")
        write(src / "B" / f"{name}.tif", b)
        Image.fromarray(label[..., 0]).save(src / "label" / f"{name}.png")
        scenes[name] = (a, b, label)
    (src / "list" / "train.txt").write_text("s1\n")
    (src / "list" / "test.txt").write_text("s2\n")
    # the suite's one ``densechange tile`` in a process of its own, through the console script
    done = subprocess.run([str(Path(sys.executable).parent / "densechange"), "tile", str(src), str(tmp_path / "tiles"),
                           "size=128", "overlap=16"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "tiles"
    train = (out / "list" / "train.txt").read_text().split()
    test = (out / "list" / "test.txt").read_text().split()
    assert all(t.startswith("s1_") for t in train) and all(t.startswith("s2_") for t in test)
    assert len(train) == 3 * 4 and len(test) == 2 * 2  # 300 -> starts 0, 112, 172; 410 -> 0, 112, 224, 282
    for name, tiles in (("s1", train), ("s2", test)):
        a, _, label = scenes[name]
        rebuilt, rebuilt_label = np.zeros_like(a), np.zeros_like(label[..., 0])
        for tile in tiles:
            top, left = (int(v) for v in tile.split("_")[1:])
            part = read_image(out / "A" / f"{tile}.tif")
            rebuilt[top : top + part.shape[0], left : left + part.shape[1]] = part
            lab = read_mask(out / "label" / f"{tile}.tif")
            rebuilt_label[top : top + lab.shape[0], left : left + lab.shape[1]] = lab
            info = raster_info(out / "A" / f"{tile}.tif")
            assert info.georef.transform == (0.5, 0.0, 500000 + 0.5 * left, 0.0, -0.5, 4650000 - 0.5 * top)
        np.testing.assert_array_equal(rebuilt, a)
        np.testing.assert_array_equal(rebuilt_label, label[..., 0] // 255)  # decoded: the toolkit's 0/1
    assert ChangeDataset(out, "train").names == sorted(train)


def test_check_reports_pairs_on_other_grids_and_pairs_that_do_not_meet(tmp_path):
    from densechange.datasets import check_dataset

    for sub in ("A", "B", "label"):
        (tmp_path / sub).mkdir()
    img = RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    label = np.zeros((32, 32, 1), np.uint8)
    for name, b_transform in (("same", from_origin(500000, 4650000, 0.5, 0.5)),
                              ("shifted", from_origin(500004, 4650000, 0.5, 0.5)),
                              ("far", from_origin(900000, 4650000, 0.5, 0.5))):
        write(tmp_path / "A" / f"{name}.tif", img)
        write(tmp_path / "B" / f"{name}.tif", img, transform=b_transform)
        write(tmp_path / "label" / f"{name}.tif", label)
    report = check_dataset(tmp_path)
    assert [p.path.rsplit("/", 1)[1] for p in report.problems if p.kind == "grid-differs"] == ["shifted.tif"]
    far = [p for p in report.problems if p.kind == "no-overlap"]
    assert len(far) == 1 and far[0].path.endswith("B/far.tif") and far[0].severity == "error" and report.fatal


def test_check_suggests_tiling_for_large_rasters_that_cannot_be_read_by_window(tmp_path):
    from densechange.datasets import check_dataset

    for sub in ("A", "label"):
        (tmp_path / sub).mkdir()
    side = 4100  # just over the 4096² line
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "A" / "big.png")
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "label" / "big.png")
    write(tmp_path / "A" / "tiled.tif", np.zeros((side, side, 1), np.uint8), tiled=True, blockxsize=256, blockysize=256,
          compress="deflate")
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "label" / "tiled.png")
    report = check_dataset(tmp_path)
    slow = [p for p in report.problems if p.kind == "not-windowed"]
    assert len(slow) == 1 and slow[0].path.endswith("A/big.png") and "densechange tile" in slow[0].message
    assert not report.fatal


class RowCounter:
    """A dataset that counts the rows it is asked to decode."""

    def __init__(self, src) -> None:
        self.src, self.rows = src, 0

    def __getattr__(self, name: str):
        return getattr(self.src, name)

    def read(self, *args, **kwargs):
        out = self.src.read(*args, **kwargs)
        self.rows += out.shape[-2]
        return out


@pytest.mark.parametrize("nodata", [None, 7])
def test_png_windows_in_streaming_order_decode_each_row_once(tmp_path, nodata):
    """A PNG (no blocks to seek to) read window by window, left to right then down, with the windows'
    overlap: every window equals the same crop of a full read, and each file row is decoded once."""
    from densechange.datasets.io.raster import ForwardRows, forward_rows

    arr = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = write(tmp_path / "scene.png", arr, driver="PNG", **({"nodata": nodata} if nodata is not None else {}))
    with open_raster(path) as src:
        whole, whole_valid = read_window(src)
        raster = forward_rows(src)
        assert isinstance(raster, ForwardRows)
        raster.src = spy = RowCounter(src)
        for top in (0, 24, 48):            # block rows 32 high with 8 rows of overlap, the last past the edge
            for left in (0, 40, 80):       # block columns 50 wide, the last past the edge
                got, valid = read_window(raster, WindowRequest(top, left, 32, 50, pad="edge"))
                want, want_valid = read_window(src, WindowRequest(top, left, 32, 50, pad="edge"))
                np.testing.assert_array_equal(got, want)
                assert (valid is None) == (want_valid is None)
                if valid is not None:
                    np.testing.assert_array_equal(valid, want_valid)
        assert spy.rows == 70              # every row once, none again for the overlap or the next column
        got, _ = read_window(raster, WindowRequest(0, 0, 10, 10))  # above the strip: read from the file, still right
        np.testing.assert_array_equal(got, whole[:10, :10])
    assert (whole_valid is None) == (nodata is None)
    tif = write(tmp_path / "scene.tif", arr, tiled=True, blockxsize=16, blockysize=16)
    with open_raster(tif) as src:
        assert forward_rows(src) is src    # block-addressable formats are read window by window as they are
