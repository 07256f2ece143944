"""N-band and high-bit-depth TIFF reading, against files written by a minimal TIFF writer below.

The writer covers the layouts the numpy decoder claims to support (strips or tiles, chunky or
planar, raw or deflate, predictor 2, either byte order); that it writes valid TIFF is checked by
reading its 8-bit RGB output back through pillow.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.errors import DatasetError
from datasets.io import read_image, read_mask, to_float_image
from datasets.tiff import read_tiff_info

_SHORT, _LONG = 3, 4
_FORMAT = {"u": 1, "i": 2, "f": 3}


def _chunks(plane: np.ndarray, tile: tuple[int, int] | None, rows: int) -> list[np.ndarray]:
    h, w = plane.shape[:2]
    if tile is None:
        return [plane[y : y + rows] for y in range(0, h, rows)]
    tl, tw = tile
    padded = np.zeros((-(-h // tl) * tl, -(-w // tw) * tw, plane.shape[2]), plane.dtype)
    padded[:h, :w] = plane
    ys, xs = range(0, padded.shape[0], tl), range(0, padded.shape[1], tw)
    return [padded[y : y + tl, x : x + tw] for y in ys for x in xs]


def write_tiff(path: Path, arr: np.ndarray, *, planar: int = 1, deflate: bool = False, predictor: bool = False,
               rows_per_strip: int | None = None, tile: tuple[int, int] | None = None,
               big_endian: bool = False) -> None:
    """Write ``arr`` (H, W, C) as a baseline TIFF with the requested storage options."""
    h, w, c = arr.shape
    order = ">" if big_endian else "<"
    rows = rows_per_strip or h
    planes = [arr[..., i : i + 1] for i in range(c)] if planar == 2 else [arr]
    blobs = []
    for plane in planes:
        for chunk in _chunks(plane, tile, rows):
            if predictor:
                chunk = chunk.copy()
                chunk[:, 1:] = chunk[:, 1:] - chunk[:, :-1]
            data = chunk.astype(chunk.dtype.newbyteorder(order)).tobytes()
            blobs.append(zlib.compress(data) if deflate else data)
    offsets, pos = [], 8
    for blob in blobs:
        offsets.append(pos)
        pos += len(blob)
    bits = arr.dtype.itemsize * 8
    tags = {256: (_LONG, [w]), 257: (_LONG, [h]), 258: (_SHORT, [bits] * c), 259: (_SHORT, [8 if deflate else 1]),
            262: (_SHORT, [2 if c == 3 and bits == 8 else 1]), 277: (_SHORT, [c]), 284: (_SHORT, [planar]),
            317: (_SHORT, [2 if predictor else 1]), 339: (_SHORT, [_FORMAT[arr.dtype.kind]] * c)}
    if tile is None:
        tags.update({273: (_LONG, offsets), 278: (_LONG, [rows]), 279: (_LONG, [len(b) for b in blobs])})
    else:
        tags.update({322: (_LONG, [tile[1]]), 323: (_LONG, [tile[0]]), 324: (_LONG, offsets),
                     325: (_LONG, [len(b) for b in blobs])})
    ifd_pos = pos + (pos % 2)
    extra_pos = ifd_pos + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag in sorted(tags):
        kind, values = tags[tag]
        payload = struct.pack(f"{order}{len(values)}{'H' if kind == _SHORT else 'I'}", *values)
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack(f"{order}I", extra_pos + len(extra))
            extra += payload
        entries += struct.pack(f"{order}HHI", tag, kind, len(values)) + field
    header = (b"MM" if big_endian else b"II") + struct.pack(f"{order}HI", 42, ifd_pos)
    body = header + b"".join(blobs) + b"\0" * (ifd_pos - pos)
    path.write_bytes(body + struct.pack(f"{order}H", len(tags)) + entries + struct.pack(f"{order}I", 0) + extra)


def _six_band(h: int = 37, w: int = 53) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 65536, (h, w, 6), dtype=np.uint64).astype(np.uint16)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"planar": 2},
        {"deflate": True, "predictor": True, "rows_per_strip": 8},
        {"planar": 2, "deflate": True, "rows_per_strip": 5},
        {"tile": (16, 32), "deflate": True, "predictor": True},
        {"tile": (16, 16), "planar": 2},
        {"big_endian": True, "rows_per_strip": 10, "predictor": True, "deflate": True},
    ],
)
def test_six_band_uint16_round_trip(tmp_path: Path, options: dict) -> None:
    arr = _six_band()
    write_tiff(tmp_path / "x.tif", arr, **options)
    out = read_image(tmp_path / "x.tif")
    assert out.dtype == np.uint16 and out.shape == (37, 53, 6)
    np.testing.assert_array_equal(out, arr)


def test_other_sample_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    floats = rng.normal(size=(9, 11, 5)).astype(np.float32)
    write_tiff(tmp_path / "f.tif", floats, rows_per_strip=4)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), floats)
    signed = rng.integers(-3000, 3000, (9, 11, 4)).astype(np.int16)
    write_tiff(tmp_path / "i.tif", signed, deflate=True, predictor=True)
    out = read_image(tmp_path / "i.tif")
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, signed)


def test_rgb16_keeps_full_precision(tmp_path: Path) -> None:
    arr = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000 + 7)
    write_tiff(tmp_path / "rgb16.tif", arr)
    out = read_image(tmp_path / "rgb16.tif")
    np.testing.assert_array_equal(out, arr)
    assert to_float_image(out)[0, 0, 1].item() == pytest.approx(3007 / 65535)


def test_writer_agrees_with_pillow(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_tiff(tmp_path / "rgb.tif", arr, deflate=True, predictor=True, rows_per_strip=7)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.tif")), arr)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), arr)
    mask = (arr[..., 0] > 128).astype(np.uint8)
    write_tiff(tmp_path / "mask.tif", mask[..., None], tile=(16, 16))
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif"), mask)


def test_corrupt_tiffs_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    write_tiff(path, _six_band(), rows_per_strip=8, deflate=True)
    info = read_tiff_info(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.tif"  # the directory (at the end) is cut off
    truncated.write_bytes(data[: len(data) // 2])
    scrambled = tmp_path / "scrambled.tif"  # directory intact, the deflate stream of chunk 1 is not
    start = info.offsets[1]
    scrambled.write_bytes(data[:start] + bytes(b ^ 0x5A for b in data[start : start + 16]) + data[start + 16 :])
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\0" + b"\xff" * 20)
    for bad in (truncated, scrambled, garbage):
        with pytest.raises(DatasetError, match=bad.name):
            read_image(bad)


def test_unsupported_compression_explains_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "lzw.tif"
    write_tiff(path, _six_band())
    data = bytearray(path.read_bytes())
    info = read_tiff_info(path)
    # Patch the Compression entry (tag 259) to LZW: pillow has no 6-band mode and numpy no LZW decoder.
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == 259:
            data[entry + 8 : entry + 10] = struct.pack("<H", 5)
    path.write_bytes(bytes(data))
    assert info.compression == 1 and read_tiff_info(path).compression == 5
    with pytest.raises(DatasetError, match="lzw.tif.*gdal_translate"):
        read_image(path)
