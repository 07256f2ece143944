"""Public datasets read as they unpack: each layout is recognised by check and read with the right labels.

The trees come from ``conftest.py`` (tiny seeded copies, the source of each layout in its writer).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.datasets import (IGNORE_INDEX, ChangeDataset, ChangeOptions, DatasetError, ImageMaskDataset, ImageMaskOptions,
                                  check_dataset)
from densechange.datasets.io.labels import change_ids
from densechange.datasets.readers.layouts import LAYOUTS, LayoutSpec, configured_layout, custom_layout, layout_named
from densechange.datasets.readers.locate import locate

from .conftest import CHANGE, IMAGE_MASK

pytestmark = []


@pytest.mark.parametrize("name", CHANGE + IMAGE_MASK)
def test_check_names_the_layout_and_finds_no_error(make_dataset, name: str) -> None:
    fx = make_dataset(name)
    report = check_dataset(fx.root)
    assert not report.fatal, report.format()
    assert report.layout.startswith(f"{name} ("), report.layout
    assert f"layout: {name} (" in report.format()
    assert report.kind == ("change" if name in CHANGE else "image-mask")
    labelled = sum(len(v) for k, v in fx.splits.items() if not (name in ("inria", "loveda") and k == "test"))
    assert report.samples == labelled
    kinds = {p.kind for p in report.problems}
    unsplit = name in ("second", "whu-cd-single")  # no split folders, no list files
    assert kinds <= ({"no-lists", "empty-mask"} if unsplit else {"empty-mask"}), report.format()


@pytest.mark.parametrize("name", CHANGE)
def test_change_layouts_read_every_split_with_the_right_labels(make_dataset, name: str) -> None:
    fx = make_dataset(name)
    for split, names in fx.splits.items():
        ds = ChangeDataset(fx.root, split)
        assert ds.layout.name == name and ds.names == sorted(names)
        for i, sample_name in enumerate(ds.names):
            s = ds[i]
            bands = 13 if name == "oscd" else 3
            assert s["a"].shape == (bands, *fx.truth[sample_name].shape) and s["a"].dtype == torch.float32
            np.testing.assert_array_equal(s["label"].numpy(), fx.truth[sample_name], err_msg=f"{name} {sample_name}")


def test_s2looking_threshold_keeps_antialiased_edges_on_the_right_side(make_dataset) -> None:
    fx = make_dataset("s2looking")
    ds = ChangeDataset(fx.root, "val")
    stored = np.array(__import__("PIL.Image", fromlist=["Image"]).open(ds.paths[0][2]))
    assert set(np.unique(stored)) - {0, 255}, "the fixture must hold values between 0 and 255"
    np.testing.assert_array_equal(ds[0]["label"].numpy(), fx.truth[ds.names[0]])


def test_cdd_jpeg_labels_hold_noise_that_the_threshold_removes(make_dataset) -> None:
    fx = make_dataset("cdd")
    ds = ChangeDataset(fx.root, "train")
    assert ds.paths[0][2].parent.parent.parent.name == "subset"  # found inside Real/subset/ of the download
    from PIL import Image
    stored = np.asarray(Image.open(ds.paths[0][2]))
    assert len(np.unique(stored)) > 2  # JPEG noise: not only 0 and 255
    binary = custom_layout("change", LayoutSpec(labels="binary"), base=layout_named("cdd"))
    with pytest.raises(DatasetError, match="unexpected change-label values"):
        ChangeDataset(fx.root, "train", layout=binary)[0]


def test_second_colour_labels_and_index_labels_decode_alike() -> None:
    from .conftest import SECOND_COLOURS
    ids = np.array([[0, 1, 5], [6, 0, 2]])
    colour, index = SECOND_COLOURS[ids], ids.astype(np.uint8)
    expected = (ids != 0).astype(np.int64)
    np.testing.assert_array_equal(change_ids(colour, "semantic"), expected)
    np.testing.assert_array_equal(change_ids(index, "semantic"), expected)
    np.testing.assert_array_equal(change_ids(np.dstack([colour, np.full((2, 3), 255, np.uint8)]), "semantic"), expected)
    grey = np.array([[0, 3, 127], [128, 250, 255]], np.uint8)
    np.testing.assert_array_equal(change_ids(grey, "threshold"), [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(change_ids(grey, "threshold", ignore_value=3), [[0, IGNORE_INDEX, 0], [1, 1, 1]])


def test_dsifn_test_masks_are_tif_and_other_splits_png(make_dataset) -> None:
    fx = make_dataset("dsifn-cd")
    assert {p[2].suffix for p in ChangeDataset(fx.root, "test").paths} == {".tif"}
    assert {p[2].suffix for p in ChangeDataset(fx.root, "train").paths} == {".png"}


def test_second_has_no_splits_so_every_split_reads_every_pair(make_dataset) -> None:
    fx = make_dataset("second")
    assert ChangeDataset(fx.root, "train").names == ChangeDataset(fx.root, "val").names == fx.splits["train"]
    assert any(p.kind == "no-lists" for p in check_dataset(fx.root).problems)


@pytest.mark.parametrize("name", IMAGE_MASK)
def test_image_mask_layouts_read_their_classes(make_dataset, name: str) -> None:
    fx = make_dataset(name)
    ds = ImageMaskDataset(fx.root, "train")
    assert ds.layout.name == name and ds.names == sorted(fx.splits["train"])
    expected_classes = {"inria": 2, "whu-building": 2, "loveda": 7, "openearthmap": 8}[name]
    assert ds.num_classes == expected_classes
    for i, sample_name in enumerate(ds.names):
        mask = ds[i]["mask"].numpy()
        stored = fx.truth[sample_name].astype(np.int64)
        if name in ("loveda", "openearthmap"):  # 0 is no-data; class k is stored as k + 1
            np.testing.assert_array_equal(mask, np.where(stored == 0, IGNORE_INDEX, stored - 1))
        else:
            np.testing.assert_array_equal(mask, stored)
        assert ds[i]["image"].shape[0] == 3


def test_loveda_groups_and_split_folders_in_any_case(make_dataset) -> None:
    fx = make_dataset("loveda")
    val = ImageMaskDataset(fx.root, "val")
    assert {p.parent.parent.name for p in val.image_paths} == {"Urban", "Rural"}
    assert val.names == sorted(fx.splits["val"])
    with pytest.raises(DatasetError, match=r"Test: the split folder has no masks_png/.*\['train', 'val'\]"):
        ImageMaskDataset(fx.root, "test")  # Test/ has images but no masks
    # The split folder itself works as a root too: its groups are every sample.
    assert ImageMaskDataset(fx.root / "Val").names == val.names
    (fx.root / "Train" / "Rural" / "images_png" / "1.png").write_bytes(
        (fx.root / "Train" / "Urban" / "images_png" / "0.png").read_bytes())
    (fx.root / "Train" / "Rural" / "masks_png" / "1.png").rename(fx.root / "Train" / "Rural" / "masks_png" / "0.png")
    (fx.root / "Train" / "Rural" / "images_png" / "1.png").rename(fx.root / "Train" / "Rural" / "images_png" / "0.png")
    with pytest.raises(DatasetError, match="share the sample name '0'"):
        ImageMaskDataset(fx.root, "train")


def test_openearthmap_lists_name_files_and_readme_is_no_split(make_dataset) -> None:
    fx = make_dataset("openearthmap")
    for split in ("train", "val", "test"):
        assert sorted(ImageMaskDataset(fx.root, split).names) == sorted(fx.splits[split])
    with pytest.raises(DatasetError, match=r"no list file for split 'readme'.*\['test', 'train', 'val'\]"):
        ImageMaskDataset(fx.root, "readme")
    # A region without images (the xBD regions of OpenEarthMap_wo_xBD) is named; skip_incomplete skips it.
    for image in (fx.root / "tokyo" / "images").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="listed samples have missing files"):
        ImageMaskDataset(fx.root, "train")
    with pytest.warns(UserWarning, match="skipping 2 listed samples"):
        assert ImageMaskDataset(fx.root, "train", ImageMaskOptions(skip_incomplete=True)).names == ["aachen_1", "aachen_2"]


def test_inria_test_split_has_no_masks_but_its_images_serve_pseudo_masks(make_dataset) -> None:
    from densechange.pretrain.data import ImageFolder

    fx = make_dataset("inria")
    with pytest.raises(DatasetError, match=r"test: the split folder has no gt/"):
        ImageMaskDataset(fx.root, "test")
    assert ImageFolder(fx.root, "test").names == fx.splits["test"]
    assert ImageFolder(fx.root, "train").names == sorted(fx.splits["train"])


def test_a_described_layout_is_read_and_a_missing_folder_is_named(tmp_path: Path, make_dataset, cli) -> None:
    fx = make_dataset("sysu-cd")
    for split in ("train", "val", "test"):
        for old, new in (("time1", "before"), ("time2", "after"), ("label", "gt")):
            (fx.root / split / old).rename(fx.root / split / new)
    options = {"a": "before", "b": "after", "label": "gt"}
    layout = configured_layout("change", options)
    assert layout.name == "custom" and layout.folders == ("before", "after", "gt")
    ds = ChangeDataset(fx.root, "val", layout=layout)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), fx.truth[ds.names[0]])
    report = check_dataset(fx.root, layout=layout)
    assert not report.fatal and report.layout.startswith("custom (before/, after/, gt/)")
    wrong = configured_layout("change", {"a": "before", "b": "later", "label": "gt"})
    with pytest.raises(DatasetError, match=r"no folder later/ \(data.layout.b\) in test/, train/, val/ of .*sysu-cd"):
        ChangeDataset(fx.root, "train", layout=wrong)
    bad = check_dataset(fx.root, layout=wrong)
    assert bad.fatal and [p.kind for p in bad.problems] == ["layout"] and "later/" in bad.problems[0].message
    assert cli(["check", str(fx.root), "data.layout.a=before", "data.layout.b=later", "data.layout.label=gt"]) == 1
    assert cli(["check", str(fx.root), "data.layout.a=before", "data.layout.b=after", "data.layout.label=gt"]) == 0
    with pytest.raises(DatasetError, match="has no key 'colour'"):
        configured_layout("change", {"colour": "x"})


def test_described_image_mask_layout_with_groups_and_lists(tmp_path: Path) -> None:
    from .conftest import _png, _rgb

    rng = np.random.default_rng(3)
    for region in ("north", "south"):
        for n in range(2):
            _png(tmp_path / region / "rgb" / f"{region}{n}.png", _rgb(rng))
            _png(tmp_path / region / "classes" / f"{region}{n}.png", (np.arange(48 * 48).reshape(48, 48) % 3).astype(np.uint8))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "fold_train.txt").write_text("north0\nsouth1\n")
    layout = configured_layout("image-mask", {"image": "rgb", "mask": "classes", "groups": True,
                                              "lists": "splits/fold_{split}.txt"})
    ds = ImageMaskDataset(tmp_path, "train", layout=layout)
    assert ds.names == ["north0", "south1"] and ds.num_classes == 3
    with pytest.raises(DatasetError, match="no image-mask layout found"):
        ImageMaskDataset(tmp_path, "train")


def test_whu_cd_scenes_pair_differently_named_rasters_and_train_on_windowed_crops(make_dataset, monkeypatch) -> None:
    from densechange.datasets.readers import change as change_module
    from densechange.datasets.transforms.geometry import draw_geometry, sample_rng

    fx = make_dataset("whu-cd")
    ds = ChangeDataset(fx.root, "train", ChangeOptions(crop_size=32, seed=4))
    names = [p.name for p in ds.paths[0]]
    assert ds.names == ["train"] and names == ["2012_train.tif", "2016_train.tif", "change_label.tif"]
    assert len(ds) == round(96 * 128 / 32**2)  # crops in proportion to the scene's area

    def whole_read(*args, **kwargs):
        raise AssertionError("a training crop read a whole scene")

    monkeypatch.setattr(change_module, "read_image_valid", whole_read)
    monkeypatch.setattr(change_module, "read_label", whole_read)
    for index in (0, 5, 11):
        g = draw_geometry(sample_rng(4, 0, index), 96, 128, 32)
        np.testing.assert_array_equal(ds[index]["label"].numpy(),
                                      fx.truth["train"][g.top:g.top + 32, g.left:g.left + 32])
    # A folder with two rasters is not a scene: the error names the folder and the files.
    extra = fx.root / "Building change detection dataset_add" / "1. The two-period image data" / "change_label" / "test"
    (extra / "copy.tif").write_bytes((extra / "change_label.tif").read_bytes())
    with pytest.raises(DatasetError, match=r"test: holds 2 rasters \(change_label.tif, copy.tif\)"):
        ChangeDataset(fx.root, "test")
    assert check_dataset(fx.root).counts()["duplicate-name"] == 1


def test_a_described_layout_may_put_the_split_inside_its_folder_paths(make_dataset) -> None:
    fx = make_dataset("whu-cd")
    base = fx.root / "Building change detection dataset_add"
    options = {"a": "1. The two-period image data/2012/whole_image/{split}/image",
               "b": "1. The two-period image data/2016/whole_image/{split}/image",
               "label": "1. The two-period image data/2012/whole_image/{split}/label"}  # building masks: a stand-in
    layout = configured_layout("change", options)
    with pytest.raises(DatasetError, match="samples lack a partner"):  # stems differ: 2012_train vs 2016_train
        ChangeDataset(base, "train", layout=layout)
    scenes = configured_layout("change", {**options, "scene": True})
    ds = ChangeDataset(base, "test", layout=scenes)
    assert ds.names == ["test"] and [p.name for p in ds.paths[0]] == ["2012_test.tif", "2016_test.tif", "2012_test.tif"]
    report = check_dataset(base, layout=scenes)
    assert not report.fatal and report.samples == 2 and "split folders test/, train/" in report.layout
    wrong = configured_layout("change", {**options, "b": "1. The two-period image data/2017/whole_image/{split}/image"})
    with pytest.raises(DatasetError, match=r"no folder .*2017/whole_image/\{split\}/image/ \(data.layout.b\)"):
        ChangeDataset(base, "train", layout=wrong)


def test_oscd_band_files_become_13_band_rasters_on_the_10m_grid(make_dataset, tmp_path: Path) -> None:
    from rasterio.enums import Resampling

    from densechange.datasets.io.raster import open_raster
    from densechange.datasets.readers.oscd import BAND_ORDER

    fx = make_dataset("oscd")
    before = sorted(p for p in fx.root.rglob("*"))
    ds = ChangeDataset(fx.root, "train")
    assert ds.names == ["abudhabi", "aguasclaras"] and sorted(p for p in fx.root.rglob("*")) == before  # nothing written there
    vrt = ds.paths[0][0]
    assert vrt.suffix == ".vrt" and vrt.is_relative_to(tmp_path / "cache") and vrt.stat().st_size < 20_000
    with open_raster(vrt) as src:
        assert src.count == 13 and (src.height, src.width) == (48, 48) and abs(src.transform.a - 10) < 1e-9
        assert [d.split(" ")[0] for d in src.descriptions] == list(BAND_ORDER)
        stacked = src.read()
    folder = fx.root / "Onera Satellite Change Detection dataset - Images" / "abudhabi" / "imgs_1"
    for index, band in enumerate(BAND_ORDER):
        source = next(folder.glob(f"*_{band}.tif"))
        with open_raster(source) as src:
            expected = src.read(1, out_shape=(48, 48), resampling=Resampling.bilinear)
            if src.width == 48:
                np.testing.assert_array_equal(stacked[index], src.read(1))  # 10 m bands pass through unchanged
        np.testing.assert_allclose(stacked[index].astype(float), expected.astype(float), atol=1, err_msg=band)
    sample = ds[0]
    np.testing.assert_allclose(sample["a"][1].numpy(), stacked[1] / np.float32(65535), rtol=1e-6)
    np.testing.assert_array_equal(sample["label"].numpy(), fx.truth["abudhabi"])
    with pytest.raises(DatasetError, match=r"OSCD has the splits \['test', 'train'\], not 'val'"):
        ChangeDataset(fx.root, "val")
    next(folder.glob("*_B8A.tif")).unlink()
    with pytest.raises(DatasetError, match="imgs_1: no file for the bands B8A"):
        ChangeDataset(fx.root, "train")


def test_every_known_layout_cites_its_source_and_folders() -> None:
    assert len({layout.name for layout in LAYOUTS}) == len(LAYOUTS)
    for layout in LAYOUTS:
        assert layout.source and layout.datasets and len(layout.folders) == (3 if layout.kind == "change" else 2)
    located = [locate.__name__]  # the module's one entry point exists
    assert located == ["locate"]


def test_overrides_without_a_kind_are_checked_not_dropped() -> None:
    from omegaconf import OmegaConf

    from densechange.cli.datasets import StatsConfig, described_layout
    from densechange.engine.config import load_config
    from densechange.engine.errors import ConfigError

    def data(*overrides: str):
        return load_config(StatsConfig, None, overrides).data

    with pytest.raises(ConfigError, match="unknown config key 'data.layout.lable'.*Did you mean: data.layout.label"):
        data("data.layout.lable=gt")  # a typo is named, not ignored
    with pytest.raises(DatasetError, match="data.layout.scene does not say whether.*data.kind=change"):
        described_layout(data("data.layout.scene=true"))
    kind, layout = described_layout(data("data.layout.name=whu-cd", "data.layout.lists=splits/{split}.txt"))
    assert kind == "change" and layout.lists == "splits/{split}.txt" and layout.scene  # the kind from the named layout
    assert described_layout(data()) == ("auto", None)
    kind, layout = described_layout(data("data.layout.a=before", "data.layout.b=after", "data.layout.label=gt"))
    assert kind == "change" and layout.folders == ("before", "after", "gt")
    with pytest.raises(DatasetError, match="data.layout.image is not a key of change layouts"):
        described_layout(data("data.kind=change", "data.layout.image=x"))
    assert OmegaConf.is_readonly(data())