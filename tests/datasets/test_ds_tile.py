"""``densechange tile`` on every known layout: the output is the classic layout, and its tiles are the source's pixels.

Each public tree comes from ``conftest.py``. The source is read through the readers training uses
(``ChangeDataset`` / ``ImageMaskDataset``, whole samples) and every tile of the output, read the same
way, must equal the source's pixels under it: images band for band in their dtype, labels decoded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from densechange.datasets import IGNORE_INDEX, ChangeDataset, ChangeOptions, DatasetError, ImageMaskDataset, check_dataset
from densechange.datasets.io.raster import RasterWindows, raster_info
from densechange.datasets.transforms.geometry import draw_geometry, sample_rng
from densechange.datasets.tools.tile import TileSpec, tile_dataset

from .conftest import CHANGE, IMAGE_MASK

SIZE = 32  # the fixtures are 48 px (scenes 64-112): starts 0 and 16, so tiles overlap and the last is flush


def _dtype_and_bands(path: Path) -> tuple[str, int]:
    info = raster_info(path)
    return info.dtype, info.count


def _tiled(fx, tmp_path: Path, layout: str) -> Path:
    """Tile the fixture; ``check`` must find the classic ``layout`` and a sample per tile, and no error."""
    out = tmp_path / "tiles"
    done = tile_dataset(fx.root, out, TileSpec(SIZE))
    report = check_dataset(out)
    assert not report.fatal, report.format()
    assert report.layout.startswith(f"{layout} (") and report.samples == done.tiles and done.layout == fx.layout
    return out


def _reader(out: Path, split: str) -> str | None:
    """The split to read the output with: its split folder, or the classic folder (list files, or every tile)."""
    return split if (out / split).is_dir() or (out / "list").is_dir() else None


def _windows(source, tiles, names: list[str], key: str) -> Iterator[tuple[int, dict, dict, tuple[int, int]]]:
    """Every tile read through ``tiles``, and the ``source`` sample's pixels under it, read the same way."""
    assert sorted({t.rsplit("_", 2)[0] for t in tiles.names}) == sorted(names)
    for i, tile in enumerate(tiles.names):
        sample = source[source.names.index(tile.rsplit("_", 2)[0])]
        top, left = (int(v) for v in tile.rsplit("_", 2)[1:])
        got = tiles[i]
        h, w = got[key].shape
        assert (h, w) == (min(SIZE, sample[key].shape[0]), min(SIZE, sample[key].shape[1]))
        yield i, got, {k: v if k == "name" else v[..., top:top + h, left:left + w] for k, v in sample.items()}, (top, left)


@pytest.mark.parametrize("name", CHANGE)
def test_every_change_layout_tiles_into_a_b_label_with_decoded_labels(make_dataset, tmp_path: Path, name: str) -> None:
    fx = make_dataset(name)
    out = _tiled(fx, tmp_path, "levir-cd")
    for split in fx.splits:
        tiles, source = ChangeDataset(out, _reader(out, split)), ChangeDataset(fx.root, split)
        for i, got, under, (top, left) in _windows(source, tiles, fx.splits[split], "label"):
            h, w = got["label"].shape
            for key in ("a", "b", "label"):  # same bands, same dtype scale: the float images are equal
                np.testing.assert_array_equal(got[key].numpy(), under[key].numpy(), err_msg=f"{name} {key}")
            np.testing.assert_array_equal(got["label"].numpy(), fx.truth[under["name"]][top:top + h, left:left + w])
            assert [_dtype_and_bands(p) for p in tiles.paths[i][:2]] == \
                [_dtype_and_bands(p) for p in source.paths[source.names.index(under["name"])][:2]]
            with rasterio.open(tiles.paths[i][2]) as label:
                assert label.dtypes[0] == "uint8" and set(np.unique(label.read(1))) <= {0, 1}  # the toolkit's 0/1


@pytest.mark.parametrize("name", IMAGE_MASK)
def test_every_image_mask_layout_tiles_into_image_mask_with_class_ids(make_dataset, tmp_path: Path, name: str) -> None:
    fx = make_dataset(name)
    out = _tiled(fx, tmp_path, "image-mask")
    for split in [k for k in fx.splits if not (name in ("inria", "loveda") and k == "test")]:  # test: no masks
        tiles, source = ImageMaskDataset(out, _reader(out, split)), ImageMaskDataset(fx.root, split)
        assert tiles.num_classes == source.num_classes == {"inria": 2, "whu-building": 2, "loveda": 7,
                                                           "openearthmap": 8}[name]
        for i, got, under, (top, left) in _windows(source, tiles, fx.splits[split], "mask"):
            h, w = got["mask"].shape
            np.testing.assert_array_equal(got["image"].numpy(), under["image"].numpy())
            np.testing.assert_array_equal(got["mask"].numpy(), under["mask"].numpy())
            stored = fx.truth[under["name"]][top:top + h, left:left + w].astype(np.int64)
            expected = np.where(stored == 0, IGNORE_INDEX, stored - 1) if name in ("loveda", "openearthmap") else stored
            np.testing.assert_array_equal(got["mask"].numpy(), expected)
            with rasterio.open(tiles.mask_paths[i]) as mask:
                values, valid = mask.read(1), mask.dataset_mask() > 0
            # ignored pixels: 255 under the mask band; the rest are the class ids 0..K-1
            np.testing.assert_array_equal(valid, expected != IGNORE_INDEX)
            np.testing.assert_array_equal(values, np.where(expected == IGNORE_INDEX, 255, expected))


def test_list_files_are_rewritten_with_the_tiles_of_each_listed_sample(make_dataset, tmp_path: Path) -> None:
    fx = make_dataset("openearthmap")  # <region>/{images,labels} and train.txt/val.txt/test.txt of file names
    out = tmp_path / "tiles"
    tile_dataset(fx.root, out, TileSpec(SIZE))
    for split, names in fx.splits.items():
        listed = (out / "list" / f"{split}.txt").read_text().split()
        assert listed == [f"{n}_{y:05d}_{x:05d}" for n in names for y in (0, 16) for x in (0, 16)]
        assert sorted(ImageMaskDataset(out, split).names) == sorted(listed)


def test_scenes_are_read_by_window_never_whole(make_dataset, tmp_path: Path, monkeypatch) -> None:
    fx = make_dataset("whu-cd")  # tiled GeoTIFF scenes, 96x128 and 64x96
    reads: list[tuple[int, int]] = []
    real = RasterWindows.read

    def counting(self, top, left, height, width):
        reads.append((height, width))
        return real(self, top, left, height, width)

    def whole(*args, **kwargs):
        raise AssertionError("a scene was read whole")

    monkeypatch.setattr(RasterWindows, "read", counting)
    monkeypatch.setattr("densechange.datasets.io.raster.read_raster", whole)
    done = tile_dataset(fx.root, tmp_path / "tiles", TileSpec(SIZE))
    assert done.parts == {"train": 3 * 4, "test": 2 * 3}
    assert len(reads) == 3 * done.tiles and set(reads) == {(SIZE, SIZE)}


def test_ignored_pixels_need_a_mask_band_so_png_output_refuses_them(make_dataset, tmp_path: Path) -> None:
    fx = make_dataset("loveda")
    with pytest.raises(DatasetError, match="PNG cannot mark; use format=tif"):
        tile_dataset(fx.root, tmp_path / "png", TileSpec(SIZE, fmt="png"))
    assert not (tmp_path / "png").exists() and [p.name for p in tmp_path.iterdir()] == ["loveda"]  # nothing half-written
    sysu = make_dataset("sysu-cd")
    done = tile_dataset(sysu.root, tmp_path / "sysu", TileSpec(SIZE, fmt="png"))
    assert not check_dataset(tmp_path / "sysu").fatal
    assert len(list((tmp_path / "sysu" / "train" / "label").glob("*.png"))) == done.parts["train"]


def test_a_label_mask_band_is_ignored_but_its_nodata_value_is_not(tmp_path: Path) -> None:
    """SpaceNet's 0/255 masks carry no-data 0, their background: a no-data *value* on a label is not trusted."""
    change = np.zeros((32, 32), np.uint8)
    change[8:16, 8:20] = 255
    profile = dict(driver="GTiff", height=32, width=32, count=1, dtype="uint8", crs="EPSG:32632",
                   transform=Affine(0.5, 0, 500000, 0, -0.5, 4650000))
    for sub in ("A", "B", "label"):
        (tmp_path / sub).mkdir()
    for sub in ("A", "B"):
        with rasterio.open(tmp_path / sub / "x.tif", "w", **{**profile, "count": 3}) as dst:
            dst.write(np.full((3, 32, 32), 90, np.uint8))
    with rasterio.open(tmp_path / "label" / "x.tif", "w", nodata=0, **profile) as dst:
        dst.write(change, 1)
    np.testing.assert_array_equal(ChangeDataset(tmp_path, None)[0]["label"].numpy(), change // 255)
    valid = np.ones((32, 32), bool)
    valid[:4] = False
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp_path / "label" / "x.tif", "w", **profile) as dst:
            dst.write(change, 1)
            dst.write_mask(valid.astype(np.uint8) * 255)
    expected = np.where(valid, change.astype(np.int64) // 255, IGNORE_INDEX)
    np.testing.assert_array_equal(ChangeDataset(tmp_path, None)[0]["label"].numpy(), expected)
    crop = ChangeDataset(tmp_path, None, ChangeOptions(crop_size=16, seed=1))  # read by window: the mask band too
    g = draw_geometry(sample_rng(1, 0, 0), 32, 32, 16)
    np.testing.assert_array_equal(crop[0]["label"].numpy(), expected[g.top:g.top + 16, g.left:g.left + 16])
    assert check_dataset(tmp_path).class_pixels[IGNORE_INDEX] == 4 * 32


def test_the_command_tiles_a_described_layout(make_dataset, tmp_path: Path, capsys, cli) -> None:
    fx = make_dataset("sysu-cd")
    for split in ("train", "val", "test"):
        for old, new in (("time1", "before"), ("time2", "after"), ("label", "gt")):
            (fx.root / split / old).rename(fx.root / split / new)
    out = tmp_path / "tiles"
    assert cli(["tile", str(fx.root), str(out), "data.layout.a=before", "data.layout.b=after", "data.layout.label=gt",
                 "size=32"]) == 0
    printed = capsys.readouterr().out
    assert "read layout custom: cut 6 samples (18 files) into 24 tiles" in printed and "train: 8" in printed
    assert ChangeDataset(out, "val").names == sorted(f"{n}_{y:05d}_{x:05d}" for n in fx.splits["val"]
                                                     for y in (0, 16) for x in (0, 16))
    # keys and positionals in any order
    assert cli(["tile", str(fx.root), str(tmp_path / "after"), "size=32", "data.layout.a=before",
                 "data.layout.b=after", "data.layout.label=gt"]) == 0
    assert ChangeDataset(tmp_path / "after", "val").names == ChangeDataset(out, "val").names
    capsys.readouterr()
    assert cli(["tile", str(fx.root), str(tmp_path / "bad"), "size=32", "--sizes", "4"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --sizes" in err and "did you mean size=..." in err
    assert cli(["tile", str(fx.root), str(tmp_path / "again"), "size=32"]) == 2  # no known layout
    err = " ".join(capsys.readouterr().err.split())  # the paragraph is wrapped wherever the path ends
    assert "no dataset layout found" in err and not (tmp_path / "again").exists()


def test_a_split_folder_wins_over_a_list_of_the_same_split(tmp_path: Path) -> None:
    """As the readers do: ``train/`` is read from its folder, so ``list/train.txt`` is not rewritten for the root's tiles."""
    from PIL import Image

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for folder, name in ((src, "x1"), (src, "x2"), (src / "train", "t1")):
        for sub in ("A", "B"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / sub / f"{name}.png")
        (folder / "label").mkdir(exist_ok=True)
        Image.fromarray(((rng.random((32, 32)) > 0.5) * 255).astype(np.uint8)).save(folder / "label" / f"{name}.png")
    (src / "list").mkdir()
    (src / "list" / "train.txt").write_text("x1\n")
    done = tile_dataset(src, tmp_path / "out", TileSpec(16))
    assert done.parts == {".": 8, "train": 4}
    assert not (tmp_path / "out" / "list" / "train.txt").exists()
    assert ChangeDataset(tmp_path / "out", "train").names == [f"t1_{y:05d}_{x:05d}" for y in (0, 16) for x in (0, 16)]
