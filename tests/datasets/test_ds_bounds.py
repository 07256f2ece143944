"""Memory bounded before decoding: files that declare huge images are read by window or refused, in seconds.

The commands run in processes of their own, whose peak resident memory is measured; the bound
(1.2 GB) is what importing the toolkit (torch included, about 0.7 GB) and a few windows take, well
under what decoding any of these files whole would (1.2 GB for the PNG, 2.7 TiB for the GeoTIFF).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
from PIL import Image

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.limits import IMAGE_PIXELS_ENV, STRIP_BYTES_ENV, read_limits
from densechange.datasets.io.raster import RasterWindows, open_raster, read_region
from densechange.datasets.io.images import read_image
from densechange.datasets.tools.check_samples import sample_windows
from tests.hostile_files import bomb_png, peak_run, sparse_tif

PEAK_BOUND = 1_200_000_000


def _change_dataset(root, a, b, label):
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True)
    return a(root / "A"), b(root / "B"), label(root / "label")


def test_check_samples_a_declared_million_squared_scene_by_window(tmp_path):
    root = tmp_path / "ds"
    _change_dataset(root, lambda d: sparse_tif(d / "s.tif", 1_000_000), lambda d: sparse_tif(d / "s.tif", 1_000_000),
                    lambda d: sparse_tif(d / "s.tif", 1_000_000, bands=1, value=255))
    start = time.perf_counter()
    status, out, peak = peak_run(["check", str(root)])
    seconds = time.perf_counter() - start
    assert status == 0 and "result: OK" in out and "image sizes: 1000000x1000000 (2)" in out, out
    # 4 x 4 windows of the label, the last row and column 576 wide (1,000,000 = 976 x 1024 + 576): 3648² pixels,
    # of which the written 256² corner is change
    assert f"pixels per class: 0: {3648**2 - 256**2} (99.51%), 1: {256**2} (0.49%)" in out, out
    assert peak < PEAK_BOUND, f"peak {peak / 1e9:.2f} GB"
    assert seconds < 60, seconds  # the import of torch is most of it


def test_check_refuses_a_png_bomb_before_decoding_it(tmp_path):
    root = tmp_path / "ds"
    _change_dataset(root, lambda d: bomb_png(d / "x.png", 20_000, 20_000),
                    lambda d: bomb_png(d / "x.png", 64, 64), lambda d: bomb_png(d / "x.png", 64, 64, channels=1))
    assert (root / "A" / "x.png").stat().st_size < 8_000_000  # 1.2 GB of pixels in 5 MB
    status, out, peak = peak_run(["check", str(root)])
    assert status == 1 and "result: FAIL" in out, out
    assert "A/x.png: the image (decoded whole) is 20000x20000 = 400,000,000 pixels, over the 89,478,485" in out
    assert IMAGE_PIXELS_ENV in out
    assert peak < PEAK_BOUND, f"peak {peak / 1e9:.2f} GB"


def test_sample_windows_cover_a_small_raster_and_spread_over_a_large_one():
    every = sample_windows(2500, 1100, side=1024)
    assert every == [(0, 0, 1024, 1024), (0, 1024, 1024, 76), (1024, 0, 1024, 1024), (1024, 1024, 1024, 76),
                     (2048, 0, 452, 1024), (2048, 1024, 452, 76)]
    spread = sample_windows(1_000_000, 1_000_000, budget=16 * 1024**2, side=1024)
    assert len(spread) == 16 and sum(h * w for _, _, h, w in spread) <= 16 * 1024**2
    assert spread[0][:2] == (0, 0) and spread[-1][:2] == (976 * 1024, 976 * 1024)  # both corners


def test_pixel_bound_is_an_error_naming_its_variable(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(tmp_path / "a.png")
    sparse_tif(tmp_path / "s.tif", 4096, bands=1, block=256)
    monkeypatch.setenv(IMAGE_PIXELS_ENV, "50000")
    with pytest.raises(DatasetError, match=f"a.png: the image .* 200x300 = 60,000 pixels, over the 50,000 pixels one "
                       f"read may decode at once \\({IMAGE_PIXELS_ENV} raises it\\)"):
        read_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match=f"the raster read whole is 4096x4096 .*{IMAGE_PIXELS_ENV}"):
        read_image(tmp_path / "s.tif")
    window, _ = read_region(tmp_path / "s.tif", 100, 200, 64, 64)  # windows stay readable
    assert window.shape == (64, 64, 1) and window[:, :56].min() == 1 and window.sum() == 64 * 56  # the 256² corner
    monkeypatch.setenv(IMAGE_PIXELS_ENV, "70000")
    assert read_image(tmp_path / "a.png").shape == (200, 300, 3)
    monkeypatch.setenv(IMAGE_PIXELS_ENV, "many")
    with pytest.raises(DatasetError, match=f"{IMAGE_PIXELS_ENV}='many' must be a positive whole number"):
        read_limits()


def test_strip_bound_refuses_a_one_strip_tiff_and_a_png_strip(tmp_path, monkeypatch):
    path = tmp_path / "strip.tif"
    with rasterio.open(path, "w", driver="GTiff", width=1000, height=1000, count=3, dtype="uint8",
                       blockysize=1000, compress="deflate") as dst:
        dst.write(np.zeros((3, 1000, 1000), np.uint8))
    monkeypatch.setenv(STRIP_BYTES_ENV, "1000000")
    with pytest.raises(DatasetError, match=rf"1000x1000x3 uint8 is 3,000,000 bytes, over the 1,000,000 .*{STRIP_BYTES_ENV}"):
        with open_raster(path):
            pass
    Image.fromarray(np.zeros((1000, 500, 3), np.uint8)).save(tmp_path / "a.png")
    from densechange.datasets.io.raster import forward_rows
    with open_raster(tmp_path / "a.png") as src:
        rows = forward_rows(src)
        assert rows.read([1, 2, 3], window=rasterio.windows.Window(0, 0, 500, 600)).shape == (3, 600, 500)
        with pytest.raises(DatasetError, match=f"the strip of rows decoded from the top .* 700x500x3 .*{STRIP_BYTES_ENV}"):
            rows.read([1, 2, 3], window=rasterio.windows.Window(0, 0, 500, 700))
    with pytest.raises(DatasetError, match=r"a.png: the image pillow decodes whole of 1000x500x3 uint8 is 1,500,000"):
        with RasterWindows(tmp_path / "a.png"):  # pillow decodes the file whole: one strip of every row
            pass
    monkeypatch.setenv(STRIP_BYTES_ENV, "1500000")
    with RasterWindows(tmp_path / "a.png") as raster:
        assert raster.read(0, 0, 10, 10)[0].shape == (10, 10, 3)
