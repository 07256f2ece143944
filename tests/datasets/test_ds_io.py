"""Raster reading, float conversion, mask normalisation and georeferencing that travels with the data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densechange.datasets import IGNORE_INDEX
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import normalize_mask, read_georef, read_image, read_mask, to_float_image, write_mask
from densechange.datasets.io.raster import Georef

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_png_jpeg_tiff_shapes_and_dtypes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.tif")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    gray16 = (np.arange(12 * 17, dtype=np.uint16).reshape(12, 17) * 300)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), rgb)
    jpg = read_image(tmp_path / "rgb.jpg")
    assert jpg.shape == (12, 17, 3) and jpg.dtype == np.uint8
    g = read_image(tmp_path / "g16.png")
    assert g.shape == (12, 17, 1) and g.dtype == np.uint16
    np.testing.assert_array_equal(g[..., 0], gray16)


def test_palette_png_gives_rgb_image_and_index_mask(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), idx)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[1, 0], [0, 255, 0])


def test_mask_saved_as_rgb(tmp_path: Path) -> None:
    m = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    Image.fromarray(np.stack([m] * 3, -1)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "grey_rgb.png"), m)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DatasetError, match="colour.png.*colour-coded"):
        read_mask(tmp_path / "colour.png")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png", "absent.png"):
        with pytest.raises(DatasetError, match=name):
            read_image(tmp_path / name)


def test_to_float_image_scales_by_dtype_max() -> None:
    u8 = np.array([[[0, 255, 51]]], dtype=np.uint8)
    out = to_float_image(u8)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2])
    u16 = np.array([[65535, 13107]], dtype=np.uint16)
    assert to_float_image(u16).flatten().tolist() == pytest.approx([1.0, 0.2])
    f = np.array([[[-1.5, 7.25]]], dtype=np.float32)
    assert to_float_image(f).flatten().tolist() == [-1.5, 7.25]


@pytest.mark.parametrize(
    ("values", "kwargs", "expected"),
    [
        ([0, 255, 255], {}, [0, 1, 1]),
        ([0, 1, 1], {}, [0, 1, 1]),
        ([0, 3, 2], {}, [0, 3, 2]),
        ([0, 255, 1], {"ignore_value": 255}, [0, IGNORE_INDEX, 1]),
        ([0, 255, 0], {"ignore_value": 255}, [0, IGNORE_INDEX, 0]),
        ([0, 255, 7], {"mask_mode": "binary255", "ignore_value": 7}, [0, 1, IGNORE_INDEX]),
        ([1, 0, 1], {"mask_mode": "binary01"}, [1, 0, 1]),
        ([4, 0, 255], {"mask_mode": "ids", "num_classes": 5, "ignore_value": 255}, [4, 0, IGNORE_INDEX]),
    ],
)
def test_normalize_mask_modes(values: list[int], kwargs: dict, expected: list[int]) -> None:
    out = normalize_mask(np.array([values], dtype=np.uint8), **kwargs)
    assert out.dtype == np.int64
    assert out[0].tolist() == expected


@pytest.mark.parametrize(
    ("values", "kwargs", "bad"),
    [
        ([0, 1, 255], {"num_classes": 2}, "255"),
        ([0, 128], {"mask_mode": "binary255"}, "128"),
        ([0, 2], {"mask_mode": "binary01"}, "2"),
        ([0, 5, 6], {"mask_mode": "ids", "num_classes": 5}, "5, 6"),
    ],
)
def test_normalize_mask_rejects_values_with_file_name(values: list[int], kwargs: dict, bad: str) -> None:
    with pytest.raises(DatasetError, match=rf"label/x.png: unexpected mask values {bad}\b"):
        normalize_mask(np.array([values], dtype=np.uint8), where="label/x.png", **kwargs)


def test_normalize_mask_negative_ids_rejected() -> None:
    with pytest.raises(DatasetError, match="-3"):
        normalize_mask(np.array([[0, -3]], dtype=np.int16), mask_mode="ids")


def test_write_mask_png_and_tiff(tmp_path: Path) -> None:
    m = np.array([[0, 255, 3], [1, 0, 0]], dtype=np.uint8)
    for name in ("m.png", "m.tif"):
        write_mask(tmp_path / name, m)
        np.testing.assert_array_equal(read_mask(tmp_path / name), m)
    assert not read_georef(tmp_path / "m.tif").georeferenced and read_georef(tmp_path / "m.png") == Georef()
    with pytest.raises(DatasetError, match="uint8"):
        write_mask(tmp_path / "bad.png", m.astype(np.int64))


def test_georef_round_trip_on_spacenet(tmp_path: Path) -> None:
    images = sorted((DATA / "spacenet-rio" / "image").glob("*.tif")) if (DATA / "spacenet-rio").is_dir() else []
    if not images:
        pytest.skip("spacenet-rio sample data not available")
    georef = read_georef(images[0])
    assert georef.georeferenced and "WGS 84" in georef.crs
    image = read_image(images[0])
    pred = (image[..., 0] > 100).astype(np.uint8) * 255
    write_mask(tmp_path / "pred.tif", pred, georef=Georef(georef.crs, georef.transform, 7.0))
    again = read_georef(tmp_path / "pred.tif")
    assert again.crs == georef.crs and again.transform == georef.transform and again.nodata == 7.0
    np.testing.assert_array_equal(read_mask(tmp_path / "pred.tif"), pred)
    # GDAL and pillow agree on the real GeoTIFF.
    np.testing.assert_array_equal(image, np.asarray(Image.open(images[0])))


def test_bilevel_png(tmp_path: Path) -> None:
    bits = np.zeros((3, 5), bool)
    bits[1, 2] = True
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert read_image(tmp_path / "bits.png")[..., 0].tolist() == (bits * 255).tolist()
    assert read_mask(tmp_path / "bits.png").tolist() == bits.astype(int).tolist()
