"""The folder layouts the toolkit reads, as data: public datasets as they unpack, and layouts a config describes.

A layout names the folder of each role (first date, second date and change label; or image and
mask), how its labels are stored, whether the role folders sit one level further down in group
folders (LoveDA's ``Urban/`` and ``Rural/``, OpenEarthMap's regions), where split list files live,
and sub-folders of a download the dataset may be nested in. Split handling is the same for every
layout (see :mod:`densechange.datasets.readers.locate`): ``ROOT/<split>/<role folders>`` (any letter
case, so LoveDA's ``Train/`` is split ``train``), or the role folders in ``ROOT`` with optional
list files.

Change labels are decoded by ``labels``:

* ``binary``: 0/255 or 0/1 (plus an optional ignore value); anything else is an error naming the file.
* ``threshold``: grey level >= 128 is changed (the mean of the colour bands for colour files). For
  labels saved as JPEG (CDD) or anti-aliased (S2Looking), whose 0/255 carry compression noise.
* ``semantic``: semantic-change maps (SECOND): a colour file is changed wherever it is not white
  (255, 255, 255), the colour of "no change"; a single-band file of class indices wherever it is not 0.

A folder path may hold ``{split}`` where the split's name goes; a ``scene`` layout holds one
whole raster per folder (WHU-CD), which training cuts into windowed crops; a ``reader`` names the
module that finds a layout's samples itself (OSCD, whose dates are folders of band files).

Image–mask layouts give a ``mask_mode`` (see :func:`densechange.datasets.io.images.normalize_mask`)
and, where the dataset fixes it, ``num_classes``.

A layout keeps the dataset's ground resolution where its documentation states one value
(``resolution_cm``, with the source in ``resolution_doc``), and what the documentation says where
the resolution varies (``resolution_doc`` alone): the ONNX export falls back on them for rasters
without georeferencing.

Example:
    >>> layout_named("s2looking").folders
    ('Image1', 'Image2', 'label')
    >>> custom_layout("change", LayoutSpec(a="before", b="after", label="gt")).folders
    ('before', 'after', 'gt')
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.labels import CHANGE_LABELS

__all__ = ["Layout", "LayoutSpec", "LAYOUTS", "KINDS", "CHANGE_LABELS", "check_kind", "layout_named", "layouts_of",
           "custom_layout", "layout_names", "configured_layout", "LAYOUT_KEYS"]

KINDS = ("change", "image-mask")
DEFAULT_LISTS = "list/{split}.txt"


@dataclass(frozen=True)
class Layout:
    """One folder layout; see the module docstring for the fields' meaning."""

    name: str
    kind: str  # change | image-mask
    folders: tuple[str, ...]  # (first date, second date, label) or (image, mask)
    datasets: str  # the public datasets that unpack this way
    source: str  # where the layout is documented
    labels: str = "binary"  # change-label decoding (change layouts)
    mask_mode: str = "auto"  # mask convention (image-mask layouts)
    num_classes: int | None = None  # classes the masks hold, when the dataset fixes it
    groups: bool = False  # role folders inside one more level of group folders
    lists: str = DEFAULT_LISTS  # split list files, relative to the dataset folder
    list_splits: tuple[str, ...] = ()  # the only split names a list file may have (empty: any)
    inside: tuple[str, ...] = ()  # sub-folders of the download the layout may sit in
    scene: bool = False  # each role folder holds one raster (a whole scene), paired whatever its name
    reader: str = ""  # a module of densechange.datasets.readers that finds the samples itself (OSCD's band files)
    note: str = ""
    resolution_cm: float | None = None  # ground resolution, only where the dataset's documentation states one value
    resolution_doc: str = ""  # what the dataset's documentation says about its ground resolution, and where

    def describe(self) -> str:
        """``Image1/, Image2/, label/`` (with ``<group>/`` in front for grouped layouts; ``{split}`` where a split goes)."""
        prefix = "<group>/" if self.groups else ""
        return ", ".join(f"{prefix}{f}/" for f in self.folders)


LAYOUTS: tuple[Layout, ...] = (
    # --- change detection --------------------------------------------------------------------------
    Layout("levir-cd", "change", ("A", "B", "label"),
           "LEVIR-CD, LEVIR-CD+, and the 256-px tiles of LEVIR-CD, WHU-CD and DSIFN-CD cut for BIT (with list/)",
           "microsoft/torchgeo torchgeo/datasets/levircd.py; justchenhao/BIT_CD README (list/ layout)"),
    Layout("s2looking", "change", ("Image1", "Image2", "label"), "S2Looking",
           "S2Looking/Dataset (S2Looking/{train,val,test}/{Image1,Image2,label,label1,label2}); "
           "likyoo/open-cd configs/_base_/datasets/s2looking.py", labels="threshold",
           note="label/ holds the change of both label1/ (new) and label2/ (demolished); grey >= 128 is change",
           # the S2Looking paper's abstract, https://arxiv.org/abs/2107.09244: "0.5 ~ 0.8 m/pixel"
           resolution_doc="0.5 to 0.8 m per pixel (the S2Looking paper, arxiv.org/abs/2107.09244)"),
    Layout("sysu-cd", "change", ("time1", "time2", "label"), "SYSU-CD",
           "Bobholamovic/CDLab src/data/sysucd.py",
           # https://github.com/liumency/SYSU-CD README: "20000 pairs of 0.5-m aerial images of size 256x256"
           resolution_cm=50.0, resolution_doc="0.5 m aerial images (the SYSU-CD README, github.com/liumency/SYSU-CD)"),
    Layout("cdd", "change", ("A", "B", "OUT"), "CDD (season-varying change detection, Lebedev et al. 2018)",
           "Bobholamovic/CDLab src/data/lebedev.py; likyoo/open-cd configs/_base_/datasets/svcd.py",
           labels="threshold", inside=("Real/subset",),
           note="OUT/ labels are JPEG: grey >= 128 is change, which absorbs the compression noise around 0 and 255",
           # Lebedev et al. 2018 (ISPRS Archives XLII-2, 565-571), as quoted by the dataset lists, e.g.
           # https://github.com/wenhwu/awesome-remote-sensing-change-detection: "a spatial resolution of 3 to 100 cm/px"
           resolution_doc="3 to 100 cm per pixel (Lebedev et al. 2018)"),
    Layout("dsifn-cd", "change", ("t1", "t2", "mask"), "DSIFN-CD",
           "likyoo/open-cd configs/_base_/datasets/dsifn.py (train/val masks .png, test masks .tif)"),
    Layout("whu-cd", "change", ("1. The two-period image data/2012/whole_image/{split}/image",
                                "1. The two-period image data/2016/whole_image/{split}/image",
                                "1. The two-period image data/change_label/{split}"),
           "WHU-CD (building change, Christchurch 2012/2016, 0.075 m), release with train and test scenes",
           "gpcv.whu.edu.cn/data/building_dataset.html ('Building change detection dataset_add'); "
           "ChenHongruixuan/ChangeDetectionRepository Dataset/BCD/README.md (one 32507x15354 pair)",
           scene=True, inside=("Building change detection dataset_add",),
           note="whole GeoTIFF scenes: training cuts windowed crops in proportion to area"),
    # No documented resolution for WHU-CD: the dataset's page could not be read here and secondary sources
    # disagree (0.075 m in ChenHongruixuan/ChangeDetectionRepository Dataset/BCD/README.md, 0.2 m elsewhere);
    # its scenes are georeferenced GeoTIFFs, whose own transform gives the resolution.
    Layout("whu-cd-single", "change", ("1. The two-period image data/before", "1. The two-period image data/after",
                                       "1. The two-period image data/change label"),
           "WHU-CD, first release: one scene pair (before.tif, after.tif, change_label.tif)",
           "gpcv.whu.edu.cn/data/building_dataset.html ('Building change detection dataset')",
           scene=True, inside=("Building change detection dataset",),
           note="one scene and no splits: set data.val_split=null"),
    Layout("oscd", "change", ("<city>/imgs_1", "<city>/imgs_2", "<city>/cm"),
           "OSCD (Onera Satellite Change Detection, Sentinel-2, 13 bands)",
           "rcdaudt.github.io/oscd; microsoft/torchgeo torchgeo/datasets/oscd.py; Bobholamovic/CDLab src/data/oscd.py",
           reader="oscd", labels="threshold",
           note="each date's band files become one VRT on the 10 m grid (all 13, B01..B08, B8A, B09..B12, or "
                "data.bands; 20 and 60 m bands bilinear); a second date on another grid is warped onto the first's; "
                "labels <city>-cm.tif (1/2), else cm.png, grey >= 128 is change; splits train and test from "
                "train.txt / test.txt (else the label folders); data.in_chans = the number of bands"),
    Layout("second", "change", ("im1", "im2", "label1"), "SECOND (semantic change; binary change read from label1/)",
           "captain-whu.github.io/SCD; colour table of ggsDing/Bi-SRNet datasets/RS_ST.py (ST_COLORMAP)",
           labels="semantic",
           note="label1/ is an RGB semantic map where white (255, 255, 255) is no change"),
    # --- image-mask (pretraining) ------------------------------------------------------------------
    Layout("sadl", "image-mask", ("A", "label"), "SaDL / Inria tiles", "justchenhao/SaDL_CD README"),
    Layout("image-mask", "image-mask", ("image", "mask"), "any image/ + mask/ folder (SpaceNet tiles)",
           "this toolkit"),
    Layout("inria", "image-mask", ("images", "gt"), "Inria Aerial Image Labeling (test/ has no gt/)",
           "microsoft/torchgeo torchgeo/datasets/inria.py (AerialImageDataset/{train,test}/{images,gt})",
           inside=("AerialImageDataset",), note="gt/ is 0/255 building masks; 5000x5000 GeoTIFFs read by window"),
    Layout("whu-building", "image-mask", ("image", "label"), "WHU Building, aerial imagery (512-px tiles)",
           "gpcv.whu.edu.cn/data/building_dataset.html, unpacked as "
           "'3. The cropped image tiles and raster labels/{train,val,test}/{image,label}'",
           inside=("3. The cropped image tiles and raster labels",)),
    Layout("loveda", "image-mask", ("images_png", "masks_png"), "LoveDA (Urban and Rural)",
           "microsoft/torchgeo torchgeo/datasets/loveda.py ({Train,Val,Test}/{Urban,Rural}/{images_png,masks_png})",
           mask_mode="ids_from_1", num_classes=7, groups=True,
           note="mask 0 is no-data (ignored); 1..7 background, building, road, water, barren, forest, agriculture"),
    Layout("openearthmap", "image-mask", ("images", "labels"), "OpenEarthMap",
           "OpenEarthMap readme.txt (<region>/{images,labels}/<region>_<n>.tif, train.txt/val.txt/test.txt); "
           "bao18/open_earth_map", mask_mode="ids_from_1", num_classes=8, groups=True, lists="{split}.txt",
           list_splits=("train", "val", "test"),
           note="label 0 is unknown (ignored); 1..8 bareland, rangeland, developed space, road, tree, water, "
                "agriculture, building"),
)


def layout_names(kind: str | None = None) -> list[str]:
    """Names of the known layouts (of one kind)."""
    return [layout.name for layout in LAYOUTS if kind is None or layout.kind == kind]


def check_kind(kind: str) -> str:
    """``kind`` when it is one of :data:`KINDS`; an error listing them otherwise."""
    if kind not in KINDS:
        raise DatasetError(f"kind={kind!r} is not one of {KINDS}.")
    return kind


def layouts_of(kind: str) -> list[Layout]:
    """The known layouts of ``kind``, in the order detection tries them."""
    check_kind(kind)
    return [layout for layout in LAYOUTS if layout.kind == kind]


def layout_named(name: str, kind: str | None = None) -> Layout:
    """The known layout ``name``; an error listing the names otherwise."""
    for layout in LAYOUTS:
        if layout.name == name and (kind is None or layout.kind == kind):
            return layout
    raise DatasetError(f"layout {name!r} is not a known {kind or ''} layout; choose auto, custom or one of "
                       f"{layout_names(kind)}.".replace("  ", " "))


def _check_folder(role: str, folder: str) -> str:
    """A role folder: a relative path inside the dataset folder, which may hold ``{split}``."""
    if not folder or folder.startswith("/") or ".." in folder.split("/"):
        raise DatasetError(f"data.layout.{role}={folder!r}: give a folder name inside the dataset folder.")
    return folder.strip("/")


@dataclass(frozen=True)
class LayoutSpec:
    """What a config's ``data.layout.*`` keys change in a layout; None keeps the base layout's value.

    Args:
        a, b, label: the change roles' folders (first date, second date, change label).
        image, mask: the image–mask roles' folders.
        labels: change-label decoding (``binary``, ``threshold`` or ``semantic``).
        groups: the role folders sit in group sub-folders.
        lists: split list files, holding ``{split}`` (e.g. ``list/{split}.txt``).
        scene: each folder holds one whole raster, paired whatever its name.
    """

    a: str | None = None
    b: str | None = None
    label: str | None = None
    image: str | None = None
    mask: str | None = None
    labels: str | None = None
    groups: bool | None = None
    lists: str | None = None
    scene: bool | None = None


def custom_layout(kind: str, spec: LayoutSpec = LayoutSpec(), *, base: Layout | None = None) -> Layout:
    """A layout described by its folder names (``data.layout.*``), starting from ``base`` or the plain one.

    Folders left None keep the base layout's (``A``, ``B``, ``label``; ``image``, ``mask``). A folder
    path may hold ``{split}`` where the split's name goes (``2012/{split}/image``); ``scene`` pairs the
    one raster of each folder whatever its name.
    """
    check_kind(kind)
    base = base or Layout("custom", kind, ("A", "B", "label") if kind == "change" else ("image", "mask"),
                          "a layout described in the config", "data.layout")
    given = dict(a=spec.a, b=spec.b, label=spec.label) if kind == "change" else dict(image=spec.image, mask=spec.mask)
    folders = tuple(_check_folder(role, value) if value is not None else default
                    for (role, value), default in zip(given.items(), base.folders))
    labels, groups, lists, scene = spec.labels, spec.groups, spec.lists, spec.scene
    if labels is not None and labels not in CHANGE_LABELS:
        raise DatasetError(f"data.layout.labels={labels!r} is not one of {CHANGE_LABELS}.")
    if lists is not None and "{split}" not in lists:
        raise DatasetError(f"data.layout.lists={lists!r} must contain {{split}}, e.g. list/{{split}}.txt.")
    changed = folders != base.folders or groups not in (None, base.groups) or scene not in (None, base.scene)
    return replace(base, name="custom" if changed else base.name, folders=folders,
                   labels=labels or base.labels, groups=base.groups if groups is None else bool(groups),
                   lists=lists or base.lists, scene=base.scene if scene is None else bool(scene))


LAYOUT_KEYS = {"change": ("name", "a", "b", "label", "labels", "groups", "lists", "scene"),
               "image-mask": ("name", "image", "mask", "groups", "lists", "scene")}
"""The keys of ``data.layout`` in the finetuning and pretraining configs."""


def configured_layout(kind: str, options: Any) -> Layout | None:
    """The layout a config's ``data.layout`` section (or a dict of its keys) asks for; None: detect one.

    ``name`` picks a known layout (``auto``: detect; ``custom``: the plain folders); folder keys
    (``a``, ``b``, ``label``, or ``image``, ``mask``), ``labels``, ``groups``, ``lists`` and ``scene`` change it.
    """
    if options is None:
        return None
    get = options.get if isinstance(options, dict) else lambda key, default=None: getattr(options, key, default)
    unknown = set(options) - set(LAYOUT_KEYS[kind]) if isinstance(options, dict) else set()
    if unknown:
        raise DatasetError(f"data.layout has no key {sorted(unknown)[0]!r}; the keys are {', '.join(LAYOUT_KEYS[kind])}.")
    name = get("name") or "auto"
    given = {k: get(k) for k in LAYOUT_KEYS[kind][1:] if get(k) is not None}
    if name == "auto" and not given:
        return None
    base = None if name in ("auto", "custom") else layout_named(name, kind)
    if not given:
        return base or custom_layout(kind)
    return custom_layout(kind, LayoutSpec(**given), base=base)

