"""OSCD as released: dates of different sizes, the two label files, bands by name, one split checked alone.

The fixture (``conftest.oscd``) mirrors the release's quirks at 48 px; the tests at the end read the
real release in ``../shared/data/oscd`` (or ``$DENSECHANGE_OSCD``) when it is there and skip otherwise,
each reading a few cities or the label files only, so they stay fast.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from densechange.datasets import ChangeDataset, ChangeOptions, DatasetError, check_dataset
from densechange.datasets.io.labels import change_ids, read_label
from densechange.datasets.io.raster import open_raster
from densechange.datasets.readers import oscd
from densechange.finetune.inference.sources import PairSource

DN = 1 / 65535  # one digital number of the uint16 bands on the training scale (integers / dtype max)
REAL = Path(os.environ.get("DENSECHANGE_OSCD", Path(__file__).resolve().parents[2] / "../shared/data/oscd")).resolve()
real = pytest.mark.skipif(not (REAL / oscd.IMAGES).is_dir(), reason=f"the OSCD release is not in {REAL}")


def test_a_second_date_on_another_grid_is_read_on_the_first_dates_grid_as_predict_reads_it(make_dataset) -> None:
    fx = make_dataset("oscd")
    ds = ChangeDataset(fx.root, "train")
    first, second, _ = ds.paths[ds.names.index("abudhabi")]
    native = second.with_name("abudhabi_imgs_2.vrt")
    with open_raster(native) as src:
        assert (src.height, src.width) == (46, 46)  # the quirk: the second date's 10 m grid is smaller
    with open_raster(second) as src:
        assert (src.height, src.width, src.count) == (48, 48, 13)
    sample = ds[ds.names.index("abudhabi")]
    assert sample["b"].shape == sample["a"].shape == (13, 48, 48)
    with PairSource(first, native) as pair:  # what `densechange predict` reads for these two dates
        assert pair.note is not None  # it warps B on the fly
        _, b, valid = pair.read(0, 0, 48, 48)
    assert valid is None or valid.all()  # same footprint: every pixel of A's grid has data in B
    np.testing.assert_allclose(sample["b"].permute(1, 2, 0).numpy(), b / np.float32(65535), rtol=0, atol=DN)
    np.testing.assert_array_equal(sample["label"].numpy(), fx.truth["abudhabi"])  # nothing ignored
    same = ds.paths[ds.names.index("aguasclaras")][1]
    assert same.name == "aguasclaras_imgs_2.vrt"  # dates on one grid are not warped


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_dates_on_other_grids_without_georeferencing_are_refused_naming_the_city(make_dataset, tmp_path: Path) -> None:
    fx = make_dataset("oscd")
    folder = fx.root / oscd.IMAGES / "abudhabi" / "imgs_2"
    for path in folder.glob("*.tif"):
        with open_raster(path) as src:
            arr = src.read(1)
        path.unlink()
        with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1,
                           dtype=arr.dtype.name) as dst:
            dst.write(arr, 1)
    with pytest.raises(DatasetError, match=r"abudhabi \(date 1 and date 2\): the dates are 48x48 and 46x46 on different pixel grids"):
        ChangeDataset(fx.root, "train")


def test_labels_are_the_clean_tif_where_it_exists_else_the_png_thresholded(make_dataset) -> None:
    fx = make_dataset("oscd")
    train = ChangeDataset(fx.root, "train")
    label = train.paths[train.names.index("aguasclaras")][2]
    assert label.name == "aguasclaras-cm.vrt"  # the -cm.tif (1/2) read through a lookup table as 0/255
    stored, _ = read_label(label)
    assert set(np.unique(stored).tolist()) == {0, 255}
    np.testing.assert_array_equal(train[train.names.index("aguasclaras")]["label"].numpy(), fx.truth["aguasclaras"])
    png = fx.root / oscd.LABELS["train"] / "aguasclaras" / "cm" / "cm.png"
    grey, _ = read_label(png)
    assert grey.shape[2] == 3 and len(np.unique(grey)) == 4  # anti-aliased RGB: 0, 90, 150, 255
    np.testing.assert_array_equal(change_ids(grey, "threshold", where=png), fx.truth["aguasclaras"])
    (png.parent / "aguasclaras-cm.tif").unlink()
    again = ChangeDataset(fx.root, "train")
    assert again.paths[again.names.index("aguasclaras")][2] == png
    np.testing.assert_array_equal(again[again.names.index("aguasclaras")]["label"].numpy(), fx.truth["aguasclaras"])
    test = ChangeDataset(fx.root, "test")
    assert test.names == ["brasilia"] and test.paths[0][2].name == "cm.png"
    assert test.streamed(0) and not ChangeDataset(fx.root, "test", ChangeOptions(crop_size=32)).streamed(0)


def test_bands_by_name_select_and_order_the_bands(make_dataset) -> None:
    fx = make_dataset("oscd")
    every = ChangeDataset(fx.root, "train")
    rgb = ChangeDataset(fx.root, "train", ChangeOptions(bands=("b04", "B03", "B02")))
    for index in range(2):
        whole, three = every[index], rgb[index]
        assert three["a"].shape == (3, 48, 48)
        for key in ("a", "b"):  # the same GDAL reads, so the same numbers
            np.testing.assert_array_equal(three[key].numpy(), whole[key].numpy()[[3, 2, 1]])
    assert rgb.paths[0][0].name == "abudhabi_imgs_1_B04-B03-B02.vrt" and every.paths[0][0].is_file()  # both kept
    with pytest.raises(DatasetError, match=r"unknown band B13; name Sentinel-2 bands of B01, .*\[B04,B03,B02\]"):
        ChangeDataset(fx.root, "train", ChangeOptions(bands=("B04", "B13")))
    with pytest.raises(DatasetError, match="names a band twice"):
        ChangeDataset(fx.root, "train", ChangeOptions(bands=("B04", "B04")))
    levir = make_dataset("levir-cd")
    with pytest.raises(DatasetError, match="data.bands picks bands by name.*levir-cd layout"):
        ChangeDataset(levir.root, "train", ChangeOptions(bands=("B04",)))


def test_check_passes_on_the_quirks_and_checks_one_split_alone(make_dataset) -> None:
    fx = make_dataset("oscd")
    report = check_dataset(fx.root)
    assert not report.fatal and report.samples == 3, report.format()
    assert not report.problems, report.format()  # no grid warning: B is read on A's grid
    assert report.class_pixels[1] == sum(int(t.sum()) for t in fx.truth.values())
    test = check_dataset(fx.root, split="test")
    assert not test.fatal and test.samples == 1 and test.class_pixels[1] == int(fx.truth["brasilia"].sum())
    wrong = check_dataset(fx.root, split="val")
    assert wrong.fatal and "no split 'val'" in wrong.format() and "['test', 'train']" in wrong.format()


def test_check_of_one_split_in_split_folders_and_list_files(make_dataset) -> None:
    for name in ("levir-cd", "s2looking"):
        fx = make_dataset(name)
        whole = check_dataset(fx.root)
        parts = {s: check_dataset(fx.root, split=s) for s in fx.splits}
        assert all(not r.fatal for r in parts.values()), [r.format() for r in parts.values()]
        assert {s: r.samples for s, r in parts.items()} == {s: len(v) for s, v in fx.splits.items()}
        assert sum(r.samples for r in parts.values()) == whole.samples


def test_oscd_is_recognised_by_its_folders_without_the_city_lists(make_dataset) -> None:
    fx = make_dataset("oscd")
    for split in ("train", "test"):
        (fx.root / oscd.IMAGES / f"{split}.txt").unlink()
    report = check_dataset(fx.root)
    assert not report.fatal and report.samples == 3 and report.layout.startswith("oscd ("), report.format()
    assert ChangeDataset(fx.root, "train").names == ["abudhabi", "aguasclaras"]


def test_a_complete_rect_folder_is_read_instead_of_the_band_files(make_dataset) -> None:
    fx = make_dataset("oscd")
    city = fx.root / oscd.IMAGES / "brasilia"
    for band in oscd.BAND_ORDER:  # every band at 10 m, a constant per band, so the source is plain to see
        with rasterio.open(next((city / "imgs_1").glob(f"*_{band}.tif"))) as src:
            profile = src.profile | dict(width=48, height=48, transform=rasterio.Affine(10, 0, 600000, 0, -10, 2700000))
        with rasterio.open(city / "imgs_1_rect" / f"{band}.tif", "w", **profile) as dst:
            dst.write(np.full((1, 48, 48), 7 + oscd.BAND_ORDER.index(band), np.uint16))
    sample = ChangeDataset(fx.root, "test")[0]
    np.testing.assert_array_equal(sample["a"].numpy()[:, 0, 0] * 65535, 7 + np.arange(13, dtype=np.float32))
    assert sample["b"].numpy().max() > 1000 / 65535  # imgs_2_rect holds two bands only: the band files are read


def test_a_binary_label_error_names_the_label_decoding_not_the_mask_mode(make_dataset) -> None:
    fx = make_dataset("levir-cd")
    label = next((fx.root / "train" / "label").glob("*.png"))
    from PIL import Image
    grey = np.array(Image.open(label).convert("L"))
    grey[0, :4] = (3, 90, 150, 200)  # anti-aliased edges
    Image.fromarray(grey).save(label)
    report = check_dataset(fx.root, "change", mask_mode="binary255")
    text = report.format()
    assert report.fatal and "mask_mode='auto'" not in text, text
    assert "unexpected change-label values 3, 90, 150, 200 (labels='binary' reads 0/1 or 0/255" in text
    assert "data.layout.labels=threshold" in text
    assert "data.mask_mode='binary255' applies to the masks of image-mask datasets" in text


@real
def test_the_real_release_splits_labels_and_totals() -> None:
    assert len(oscd.cities(REAL, "train")) == 14 and len(oscd.cities(REAL, "test")) == 10
    assert not set(oscd.cities(REAL, "train")) & set(oscd.cities(REAL, "test"))
    changed = {}
    for split in ("train", "test"):
        changed[split] = 0
        for city in oscd.cities(REAL, split):
            path = oscd.label_file(REAL, split, city)
            assert path.name == ("cm.png" if split == "test" else f"{city}-cm.vrt")
            stored, valid = read_label(path)
            changed[split] += int(change_ids(stored, "threshold", valid=valid, where=path).sum())
    assert changed == {"train": 149_190, "test": 159_077}  # the published totals (README.md of the copy)
    folder = REAL / oscd.LABELS["train"] / "aguasclaras" / "cm"
    png, _ = read_label(folder / "cm.png")
    with open_raster(folder / "aguasclaras-cm.tif") as src:
        tif = src.read(1)
    assert set(np.unique(tif).tolist()) == {1, 2}
    np.testing.assert_array_equal(change_ids(png, "threshold"), (tif == 2).astype(np.int64))  # 4,056 changed pixels


@real
def test_the_real_release_checks_and_reads_a_city_of_different_sizes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(oscd.CACHE_ENV, str(tmp_path / "cache"))
    copy = tmp_path / "oscd"  # one test city of the release, linked, with its own city list
    (copy / oscd.IMAGES).mkdir(parents=True)
    (copy / oscd.LABELS["test"]).mkdir()
    (copy / oscd.IMAGES / "saclay_w").symlink_to(REAL / oscd.IMAGES / "saclay_w")
    (copy / oscd.LABELS["test"] / "saclay_w").symlink_to(REAL / oscd.LABELS["test"] / "saclay_w")
    (copy / oscd.IMAGES / "test.txt").write_text("saclay_w")
    report = check_dataset(copy, split="test")
    assert not report.fatal and not report.problems and report.samples == 1, report.format()
    assert report.sizes == {(639, 688): 2}  # the second date (631x679) is read on the first date's grid
    ds = ChangeDataset(copy, "test", ChangeOptions(bands=("B04", "B03", "B02")))
    sample = ds[ds.names.index("saclay_w")]
    assert sample["a"].shape == sample["b"].shape == (3, 639, 688) and sample["label"].shape == (639, 688)
    first, second, _ = ds.paths[ds.names.index("saclay_w")]
    with PairSource(first, second.with_name("saclay_w_imgs_2_B04-B03-B02.vrt")) as pair:  # predict's reading
        _, b, _ = pair.read(0, 0, 639, 688)
    np.testing.assert_allclose(sample["b"].permute(1, 2, 0).numpy(), b / np.float32(65535), rtol=0, atol=DN)
    assert (sample["label"] >= 0).all()  # the warped date covers the whole first-date grid: nothing ignored


def test_data_bands_set_the_input_bands_and_evaluate_reads_the_checkpoints() -> None:
    from types import SimpleNamespace

    from densechange.engine.errors import ConfigError
    from densechange.finetune.data import chosen_bands
    from densechange.finetune.evaluate import _trained_bands

    assert chosen_bands(SimpleNamespace(bands=["B04", "B03", "B02"], in_chans=3)) == ("B04", "B03", "B02")
    assert chosen_bands(SimpleNamespace(bands=None, in_chans=13)) is None
    with pytest.raises(ConfigError, match=r"data.bands names 3 bands but data.in_chans=13; set data.in_chans=3"):
        chosen_bands(SimpleNamespace(bands=["B04", "B03", "B02"], in_chans=13))
    assert _trained_bands({"config": {"data": {"bands": ["B04", "B03", "B02"]}}}) == ["B04", "B03", "B02"]
    assert _trained_bands({"config": {}}) is None
