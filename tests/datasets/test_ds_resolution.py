"""The ground resolution an ONNX export records: from any layout's first-date raster, else the dataset's documentation.

``training_resolution_cm`` reads a finetuning run's recorded ``data`` section; the trees are the
tiny copies of ``conftest.py`` (GeoTIFF scenes in UTM at 0.3 m, OSCD's bands on its 10 m grid,
PNG and JPEG tiles without georeferencing).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from densechange.datasets.readers.layouts import LAYOUTS, layout_named
from densechange.finetune.onnx.metadata import training_resolution_cm


@pytest.mark.parametrize("name, split, first, cm", [
    ("whu-cd", "train", "2012_train.tif", 30.0),  # a whole scene of the {split} folder paths: its 0.3 m transform
    ("whu-cd-single", "train", "before.tif", 30.0),
    ("oscd", "train", "abudhabi_imgs_1.vrt", 1000.0),  # the 13-band VRT on B02's 10 m grid
])
def test_a_georeferenced_first_date_of_any_layout_gives_its_resolution(make_dataset, name: str, split: str, first: str,
                                                                       cm: float) -> None:
    fx = make_dataset(name)
    value, note = training_resolution_cm({"data": {"root": str(fx.root), "split": split}})
    assert value == pytest.approx(cm) and note.startswith(f"ground resolution {cm:.4g} cm/px read from ")
    assert Path(note.rsplit(" ", 1)[1]).name == first


def test_without_georeferencing_a_documented_single_resolution_is_used_and_named(make_dataset) -> None:
    fx = make_dataset("sysu-cd")  # PNG tiles; the SYSU-CD README: 0.5-m aerial images
    value, note = training_resolution_cm({"data": {"root": str(fx.root), "split": "val"}})
    assert value == 50.0
    assert "time1/00002.png is not georeferenced, so the sysu-cd layout's documented value is used" in note
    assert "github.com/liumency/SYSU-CD" in note


@pytest.mark.parametrize("name, documented", [
    ("s2looking", "0.5 to 0.8 m per pixel (the S2Looking paper, arxiv.org/abs/2107.09244)"),
    ("cdd", "3 to 100 cm per pixel (Lebedev et al. 2018)"),
    ("dsifn-cd", None),
    ("second", None),
    ("levir-cd", None),  # the classic A/B/label layout: any dataset may use it, so it documents nothing
])
def test_a_varying_or_undocumented_resolution_asks_for_resolution(make_dataset, name: str, documented: str | None) -> None:
    fx = make_dataset(name)
    value, note = training_resolution_cm({"data": {"root": str(fx.root), "split": "train"}})
    assert value is None and note.endswith("pass resolution=CM to record the ground resolution")
    assert f"layout {name}) is not georeferenced" in note
    assert (f"its documentation gives {documented}, not one value" in note) if documented else "documentation" not in note


def test_a_described_layout_is_read_and_an_unreadable_folder_is_named(make_dataset, tmp_path: Path) -> None:
    fx = make_dataset("whu-cd")
    scenes = "1. The two-period image data/{year}/whole_image/{{split}}/image"
    layout = {"name": "auto", "a": scenes.format(year=2016), "b": scenes.format(year=2012),
              "label": "1. The two-period image data/change_label/{split}", "scene": True}
    base = fx.root / "Building change detection dataset_add"
    value, note = training_resolution_cm({"data": {"root": str(base), "split": "test", "layout": layout}})
    assert value == pytest.approx(30.0) and note.endswith("2016_test.tif")  # data.layout.a: the 2016 scene here
    value, note = training_resolution_cm({"data": {"root": str(tmp_path / "gone"), "split": "train"}})
    assert value is None and "is not readable here; pass resolution=CM" in note
    assert training_resolution_cm({"data": {"root": "synthetic"}})[0] is None


def test_only_documented_single_values_are_recorded() -> None:
    documented = {layout.name: layout.resolution_cm for layout in LAYOUTS if layout.resolution_cm is not None}
    assert documented == {"sysu-cd": 50.0}
    for layout in LAYOUTS:  # a value always names its source; a range never carries a value
        assert layout.resolution_cm is None or "github.com" in layout.resolution_doc
    assert layout_named("s2looking").resolution_cm is None and layout_named("cdd").resolution_cm is None
