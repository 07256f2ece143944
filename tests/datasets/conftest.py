"""Tiny, seeded copies of public datasets' folder trees, written on the fly (no binary files committed).

Each writer mirrors its dataset as it unpacks: folder and file names, formats, dtypes, band counts,
label encodings and split files, at 32-64 pixels and a couple of samples per split. The source of
each layout is cited in the writer's docstring. ``truth[name]`` is the change (or class) map each
label file encodes, so tests can check the decoding against numbers, not just shapes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

SIZE = 48


@dataclass
class Fixture:
    """A written dataset: its root, the split each sample is in, and the class map each label encodes."""

    root: Path
    layout: str
    splits: dict[str, list[str]] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)


def _rgb(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.integers(40, 200, 3)
    noise = rng.integers(0, 40, (size, size, 3))
    return np.clip(base + noise + ((yy + xx) % 16)[..., None], 0, 255).astype(np.uint8)


def _change(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A 0/1 map with one or two rectangles of change."""
    out = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        y, x = rng.integers(0, size - 12, 2)
        h, w = rng.integers(6, 12, 2)
        out[y:y + h, x:x + w] = 1
    return out


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _jpg(path: Path, arr: np.ndarray, quality: int = 75) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=quality)


def _tif(path: Path, arr: np.ndarray, georef: bool = True, tiled: bool = False) -> None:
    """A GeoTIFF (UTM 32N, 0.3 m pixels) of ``(H, W)`` or ``(H, W, C)``, its own dtype."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = arr[..., None] if arr.ndim == 2 else arr
    profile = dict(driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=arr.shape[2], dtype=arr.dtype.name)
    if tiled:
        profile.update(tiled=True, blockxsize=32, blockysize=32)
    if georef:
        profile.update(crs="EPSG:32632", transform=Affine(0.3, 0.0, 500000.0, 0.0, -0.3, 5000000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(arr, -1, 0))


def levir_cd(root: Path, seed: int) -> Fixture:
    """LEVIR-CD: ``{train,val,test}/{A,B,label}/<split>_<n>.png``, RGB PNG, labels 0/255 grey.

    Source: microsoft/torchgeo torchgeo/datasets/levircd.py (LEVIRCDPlus: ``<split>/{A,B,label}``).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "levir-cd")
    for split in ("train", "val", "test"):
        for n in range(2):
            name = f"{split}_{n + 1}"
            change = _change(rng)
            _png(root / split / "A" / f"{name}.png", _rgb(rng))
            _png(root / split / "B" / f"{name}.png", _rgb(rng))
            _png(root / split / "label" / f"{name}.png", change * np.uint8(255))
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = change
    return fx


def s2looking(root: Path, seed: int) -> Fixture:
    """S2Looking: ``{train,val,test}/{Image1,Image2,label,label1,label2}/<n>.png``.

    ``label/`` is single-band, 0/255 with anti-aliased edges (values that are neither; open-cd reads it
    with a 128 threshold), ``label1/`` and ``label2/`` are the colour maps of new and demolished buildings.
    Source: S2Looking/Dataset (S2Looking/S2Looking/test/Image1/1008.png, ...); likyoo/open-cd
    configs/_base_/datasets/s2looking.py and opencd/datasets/pipelines/loading.py (format_ann='binary').
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "s2looking")
    for split in ("train", "val", "test"):
        for n in range(2):
            name = str(int(rng.integers(1, 5000)) * 10 + n)
            change = _change(rng)
            label = change * np.uint8(255)
            edge = (np.roll(change, 1, 0) != change) & (change == 0)
            label[edge] = 60  # anti-aliasing just outside a change: below 128, so unchanged
            inner = (np.roll(change, -1, 1) != change) & (change == 1)
            label[inner] = 200  # inside the change: above 128
            for sub, arr in (("Image1", _rgb(rng)), ("Image2", _rgb(rng)), ("label", label),
                             ("label1", np.stack([label, 0 * label, 0 * label], -1)),
                             ("label2", np.zeros((SIZE, SIZE, 3), np.uint8))):
                _png(root / split / sub / f"{name}.png", arr)
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = change
    return fx


def sysu_cd(root: Path, seed: int) -> Fixture:
    """SYSU-CD: ``{train,val,test}/{time1,time2,label}/<nnnnn>.png``, labels 0/255.

    Source: Bobholamovic/CDLab src/data/sysucd.py.
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "sysu-cd")
    for split in ("train", "val", "test"):
        for n in range(2):
            name = f"{len(fx.truth):05d}"
            change = _change(rng)
            _png(root / split / "time1" / f"{name}.png", _rgb(rng))
            _png(root / split / "time2" / f"{name}.png", _rgb(rng))
            _png(root / split / "label" / f"{name}.png", change * np.uint8(255))
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = change
    return fx


def cdd(root: Path, seed: int) -> Fixture:
    """CDD: ``Real/subset/{train,val,test}/{A,B,OUT}/<nnnnn>.jpg``: images and labels JPEG.

    The labels' 0/255 carry JPEG noise (values like 3 or 251); ``Model/`` holds the synthetic part.
    Source: Bobholamovic/CDLab src/data/lebedev.py (``Real/subset/<split>/{A,B,OUT}``, labels > 127);
    likyoo/open-cd configs/_base_/datasets/svcd.py.
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "cdd")
    (root / "Model" / "with_shift").mkdir(parents=True)
    for split in ("train", "val", "test"):
        for n in range(2):
            name = f"{len(fx.truth):05d}"
            change = _change(rng)
            base = root / "Real" / "subset" / split
            _jpg(base / "A" / f"{name}.jpg", _rgb(rng))
            _jpg(base / "B" / f"{name}.jpg", _rgb(rng))
            _jpg(base / "OUT" / f"{name}.jpg", np.repeat((change * np.uint8(255))[..., None], 3, -1), quality=70)
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = change
    return fx


def dsifn_cd(root: Path, seed: int) -> Fixture:
    """DSIFN-CD: ``{train,val,test}/{t1,t2,mask}``: images ``.jpg``, masks ``.png`` but ``.tif`` for test.

    Source: likyoo/open-cd configs/_base_/datasets/dsifn.py (img_suffix .jpg, seg_map_suffix .png and
    .tif for test); GeoZcx/A-deeply-supervised-image-fusion-network-... dataset/README.md (512 px tiles).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "dsifn-cd")
    for split in ("train", "val", "test"):
        for n in range(2):
            name = str(len(fx.truth))
            change = _change(rng)
            _jpg(root / split / "t1" / f"{name}.jpg", _rgb(rng), quality=95)
            _jpg(root / split / "t2" / f"{name}.jpg", _rgb(rng), quality=95)
            if split == "test":
                _tif(root / split / "mask" / f"{name}.tif", change * np.uint8(255), georef=False)
            else:
                _png(root / split / "mask" / f"{name}.png", change * np.uint8(255))
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = change
    return fx


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(rng.integers(60, 120, 3) + ((yy // 7 + xx // 5) % 9)[..., None] * 12
                   + rng.integers(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _scene_change(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        out[y:y + int(rng.integers(6, 16)), x:x + int(rng.integers(6, 16))] = 1
    return out


def _sidecars(tif: Path) -> None:
    """The files ArcGIS leaves beside a GeoTIFF: world file, statistics, metadata."""
    tif.with_suffix(".tfw").write_text("0.075\n0\n0\n-0.075\n1568000\n5180000\n")
    tif.with_name(tif.name + ".aux.xml").write_text("<PAMDataset></PAMDataset>\n")
    tif.with_name(tif.name + ".xml").write_text("<metadata></metadata>\n")


def whu_cd(root: Path, seed: int) -> Fixture:
    """WHU-CD, current release: whole GeoTIFF scenes of 2012 and 2016 and the change label, per split.

    ``Building change detection dataset_add/1. The two-period image data/{2012,2016}/whole_image/
    {train,test}/{image,label}/<year>_<split>.tif`` (with .tfw, .tif.aux.xml, .tif.xml sidecars),
    ``.../{2012,2016}/splited_images/...`` (building tiles, not read) and
    ``.../change_label/{train,test}/change_label.tif`` (0/255). Here 96x128 (train) and 64x96 (test),
    tiled so that crops are windows. Source: gpcv.whu.edu.cn/data/building_dataset.html; the tree as
    listed in public code that reads the release (WHU-CD audit and restructuring scripts found
    through the code index); ChenHongruixuan/ChangeDetectionRepository Dataset/BCD/README.md.
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "whu-cd")
    data = root / "Building change detection dataset_add" / "1. The two-period image data"
    for split, (h, w) in (("train", (96, 128)), ("test", (64, 96))):
        change = _scene_change(rng, h, w)
        for year in ("2012", "2016"):
            image = data / year / "whole_image" / split / "image" / f"{year}_{split}.tif"
            _tif(image, _scene(rng, h, w), tiled=True)
            _sidecars(image)
            _tif(data / year / "whole_image" / split / "label" / f"{year}_{split}.tif", _scene_change(rng, h, w) * np.uint8(255))
            _png(data / year / "splited_images" / split / "image" / "0_0.png", _rgb(rng, 32))
        label = data / "change_label" / split / "change_label.tif"
        _tif(label, change * np.uint8(255), tiled=True)
        _sidecars(label)
        fx.splits[split] = [split]
        fx.truth[split] = change
    (root / "Building change detection dataset_add" / "2. The shape file of the images" / "train").mkdir(parents=True)
    return fx


def whu_cd_single(root: Path, seed: int) -> Fixture:
    """WHU-CD, first release: ``1. The two-period image data/{before/before.tif, after/after.tif,
    change label/change_label.tif}``, one scene pair and its 0/255 change label.

    Source: gpcv.whu.edu.cn/data/building_dataset.html; the paths as read by public tiling scripts
    (``WHU-CD/1. The two-period image data/before/before.tif``, ``after/after.tif``,
    ``change label/change_label.tif``).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "whu-cd-single")
    data = root / "1. The two-period image data"
    change = _scene_change(rng, 80, 112)
    _tif(data / "before" / "before.tif", _scene(rng, 80, 112), tiled=True)
    _tif(data / "after" / "after.tif", _scene(rng, 80, 112), tiled=True)
    _tif(data / "change label" / "change_label.tif", change * np.uint8(255), tiled=True)
    fx.splits["train"] = ["scene"]
    fx.truth["scene"] = change
    return fx


OSCD_RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
                   "B09": 60, "B10": 60, "B11": 20, "B12": 20}


def oscd(root: Path, seed: int) -> Fixture:
    """OSCD: one GeoTIFF per Sentinel-2 band and date, city lists, change maps in their own folders, and the quirks.

    ``Onera Satellite Change Detection dataset - Images/{train,test}.txt`` (comma-separated cities),
    ``.../<city>/imgs_{1,2}/S2A_OPER_MSI_L1C_TL_..._B01.tif`` ... ``_B12.tif`` and ``_B8A.tif`` at 10, 20
    and 60 m (here 48, 24 and 8 px over the same 480 m, uint16, UTM), ``imgs_{1,2}_rect/B01.tif`` and
    ``B02.tif`` only (an incomplete 10 m resampling, not read), ``dates.txt``, ``... - Train Labels/<city>/
    cm/cm.png`` (0/255) beside ``<city>-cm.tif`` (1 no change, 2 change) and ``... - Test Labels/<city>/
    cm/cm.png`` alone. The release's quirks: abudhabi's second date lies on a grid a few pixels smaller
    over the same footprint (46, 23 and 8 px), and aguasclaras' ``cm.png`` is anti-aliased RGB whose
    grey >= 128 is its ``-cm.tif``. Sources: the release as downloaded (see docs/datasets.md, OSCD);
    microsoft/torchgeo torchgeo/datasets/oscd.py (``imgs_1_rect``, ``cm/cm.png``, ``dates.txt``);
    Bobholamovic/CDLab src/data/oscd.py (band names, ``train.txt`` split on commas, ``<city>-cm.tif``).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "oscd")
    images = root / "Onera Satellite Change Detection dataset - Images"
    for split, cities in (("train", ("abudhabi", "aguasclaras")), ("test", ("brasilia",))):
        for city in cities:
            for date, stamp in (("1", "20160208T070137"), ("2", "20170309T070011")):
                for band, metres in OSCD_RESOLUTION.items():
                    size = 480 // metres - (2 // (metres // 10) if (city, date) == ("abudhabi", "2") else 0)
                    level = 1000 + 100 * list(OSCD_RESOLUTION).index(band)
                    arr = (level + rng.integers(0, 400, (size, size))).astype(np.uint16)
                    name = f"S2A_OPER_MSI_L1C_TL_SGS__{stamp}_A003297_T39RZH_{band}.tif"
                    _geotiff(images / city / f"imgs_{date}" / name, arr, 480 / size)
                    if band in ("B01", "B02"):
                        _geotiff(images / city / f"imgs_{date}_rect" / f"{band}.tif", np.zeros((48, 48), np.uint16), 10)
            (images / city / "dates.txt").write_text(f"date_1: 20160208\ndate_2: 20170309\n")
            change = _change(rng)
            labels = root / f"Onera Satellite Change Detection dataset - {split.capitalize()} Labels" / city / "cm"
            if city == "aguasclaras":  # anti-aliased RGB: grey edges around the change, >= 128 inside it
                grey = change * np.uint8(255)
                edge = (np.roll(change, 1, 0) != change) | (np.roll(change, 1, 1) != change)
                grey[edge] = np.where(change[edge] == 1, 150, 90).astype(np.uint8)
                _png(labels / "cm.png", np.repeat(grey[..., None], 3, axis=2))
            else:
                _png(labels / "cm.png", change * np.uint8(255))
            if split == "train":
                _tif(labels / f"{city}-cm.tif", change + np.uint8(1), georef=False)
            fx.splits.setdefault(split, []).append(city)
            fx.truth[city] = change
        (images / f"{split}.txt").write_text(",".join(cities))
    return fx


def _geotiff(path: Path, arr: np.ndarray, metres: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype.name,
                       crs="EPSG:32639", transform=Affine(float(metres), 0.0, 600000.0, 0.0, -float(metres), 2700000.0)) as dst:
        dst.write(arr, 1)


SECOND_COLOURS = np.array([[255, 255, 255], [0, 0, 255], [128, 128, 128], [0, 128, 0], [0, 255, 0], [128, 0, 0],
                           [255, 0, 0]], np.uint8)
"""unchanged (white), water, ground, low vegetation, tree, building, sports field."""


def second(root: Path, seed: int) -> Fixture:
    """SECOND: ``SECOND_train_set/{im1,im2,label1,label2}/<nnnnn>.png``, labels RGB semantic-change maps.

    White (255, 255, 255) is no change; a changed pixel has its land-cover colour in each date's label.
    The official release holds the training set only, with no split files.
    Source: captain-whu.github.io/SCD; ggsDing/Bi-SRNet datasets/RS_ST.py (ST_COLORMAP, im1/im2/label1/label2).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "second")
    for n in range(3):
        name = f"{n:05d}"
        change = _change(rng)
        before = rng.integers(1, 7, (SIZE, SIZE))
        after = (before + rng.integers(1, 6, (SIZE, SIZE))) % 6 + 1
        _png(root / "im1" / f"{name}.png", _rgb(rng))
        _png(root / "im2" / f"{name}.png", _rgb(rng))
        _png(root / "label1" / f"{name}.png", SECOND_COLOURS[np.where(change == 1, before, 0)])
        _png(root / "label2" / f"{name}.png", SECOND_COLOURS[np.where(change == 1, after, 0)])
        fx.splits.setdefault("train", []).append(name)
        fx.truth[name] = change
    return fx


def inria(root: Path, seed: int) -> Fixture:
    """Inria: ``AerialImageDataset/{train,test}/images/<city><n>.tif``, ``train/gt/`` 0/255 single band.

    RGB GeoTIFFs; the test split has no ``gt/``. Source: microsoft/torchgeo torchgeo/datasets/inria.py.
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "inria")
    base = root / "AerialImageDataset"
    for split, cities in (("train", ("austin", "vienna")), ("test", ("bellingham",))):
        for city in cities:
            name = f"{city}{int(rng.integers(1, 37))}"
            _tif(base / split / "images" / f"{name}.tif", _rgb(rng, 64))
            if split == "train":
                mask = _change(rng, 64)
                _tif(base / split / "gt" / f"{name}.tif", mask * np.uint8(255))
                fx.truth[name] = mask
            fx.splits.setdefault(split, []).append(name)
    return fx


def whu_building(root: Path, seed: int) -> Fixture:
    """WHU Building (aerial, cropped tiles): ``3. The cropped image tiles and raster labels/{train,val,test}/{image,label}/``.

    512-px GeoTIFF tiles (here 48), labels 0/255. Source: gpcv.whu.edu.cn/data/building_dataset.html;
    the unpacked tree as read by CAT-SAM's datasets/whu/preprocess.py and Meize0729/opencd_debug
    tools/data_process (``train/image``, ``train/label`` (0,255)).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "whu-building")
    base = root / "3. The cropped image tiles and raster labels"
    for split in ("train", "val", "test"):
        for n in range(2):
            name = str(len(fx.truth))
            mask = _change(rng)
            _tif(base / split / "image" / f"{name}.tif", _rgb(rng))
            _tif(base / split / "label" / f"{name}.tif", mask * np.uint8(255))
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = mask
    return fx


def loveda(root: Path, seed: int) -> Fixture:
    """LoveDA: ``{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}/<n>.png``; masks 0 no-data, 1..7.

    Names are unique across Urban and Rural; Test has no masks. Source: microsoft/torchgeo
    torchgeo/datasets/loveda.py.
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "loveda")
    n = 0
    for split in ("Train", "Val", "Test"):
        for scene in ("Urban", "Rural"):
            name = str(n)
            n += 1
            _png(root / split / scene / "images_png" / f"{name}.png", _rgb(rng))
            if split != "Test":
                mask = rng.integers(1, 8, (SIZE, SIZE)).astype(np.uint8)
                mask[:4] = 0  # a no-data band along the top
                _png(root / split / scene / "masks_png" / f"{name}.png", mask)
                fx.truth[name] = mask
            fx.splits.setdefault(split.lower(), []).append(name)
    return fx


def openearthmap(root: Path, seed: int) -> Fixture:
    """OpenEarthMap: ``<region>/{images,labels}/<region>_<n>.tif`` and ``{train,val,test}.txt`` of file names.

    Labels 0 (unknown) and 1..8; the release beside ``readme.txt`` (not a split file). Source: the
    dataset's readme.txt (NehorayMelamed/UniversialLabel .../OpenEarthMap_wo_xBD/readme.txt);
    bao18/open_earth_map data/train.txt ("aachen_1.tif" per line).
    """
    rng, fx = np.random.default_rng(seed), Fixture(root, "openearthmap")
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for region in ("aachen", "tokyo"):
        for n, split in enumerate(("train", "train", "val", "test")):
            name = f"{region}_{n + 1}"
            mask = rng.integers(0, 9, (SIZE, SIZE)).astype(np.uint8)
            _tif(root / region / "images" / f"{name}.tif", _rgb(rng))
            _tif(root / region / "labels" / f"{name}.tif", mask)
            lists[split].append(f"{name}.tif")
            fx.splits.setdefault(split, []).append(name)
            fx.truth[name] = mask
    for split, names in lists.items():
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    (root / "readme.txt").write_text("train/val/test split: train.txt, val.txt, and test.txt contain filenames.\n")
    return fx


WRITERS: dict[str, Callable[[Path, int], Fixture]] = {
    "levir-cd": levir_cd, "s2looking": s2looking, "sysu-cd": sysu_cd, "cdd": cdd, "dsifn-cd": dsifn_cd,
    "second": second, "oscd": oscd, "whu-cd": whu_cd, "whu-cd-single": whu_cd_single, "inria": inria, "whu-building": whu_building, "loveda": loveda, "openearthmap": openearthmap,
}
CHANGE = ("levir-cd", "s2looking", "sysu-cd", "cdd", "dsifn-cd", "second", "whu-cd", "whu-cd-single", "oscd")
IMAGE_MASK = ("inria", "whu-building", "loveda", "openearthmap")


@pytest.fixture
def make_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], Fixture]:
    """``make_dataset("s2looking")``: the layout's tiny copy under a fresh folder (OSCD's VRTs in a fresh cache)."""
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path / "cache"))

    def make(name: str, seed: int = 0) -> Fixture:
        return WRITERS[name](tmp_path / name, seed)
    return make
