"""Bi-temporal change-detection datasets on disk, the input of finetuning and evaluation.

Public datasets are read as they unpack (LEVIR-CD, LEVIR-CD+, S2Looking, SYSU-CD, CDD, DSIFN-CD,
SECOND; see :mod:`densechange.datasets.readers.layouts`), and any other tree a layout describes
(``data.layout.*``). The classic toolkit layouts are two of them::

    ROOT/{A,B,label}/ + ROOT/list/{train,val,test}.txt      (BIT / LEVIR-CD-256 style)
    ROOT/{train,val,test}/{A,B,label}/                      (official LEVIR-CD style)

A folder without list files uses every complete sample. Labels are decoded by the layout (0/255 or
0/1, a grey threshold for JPEG labels, "not white" for semantic-change maps; see
:mod:`densechange.datasets.io.labels`) to 0 unchanged, 1 changed, ``IGNORE_INDEX`` ignored.
Training geometry (crop, flips, quarter turns) is applied identically to both dates and the label;
photometric changes per date are applied batched on the training device, not here. Whole scenes (a
scene layout read without crops) are :meth:`ChangeDataset.streamed`: evaluation reads them by window.

Example:
    >>> ds = ChangeDataset("/data/levir", "train", ChangeOptions(crop_size=256, flip=True, rot90=True))
    >>> s = ds[0]; s["a"].shape, s["label"].unique()          # (3, 256, 256), tensor([0, 1])
    >>> pairs = list_pairs("t1/", "t2/")                       # for prediction on folders
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.files import index_folder
from densechange.datasets.io.labels import blank_invalid, change_ids, read_label, read_label_window
from densechange.datasets.readers.crops import CropPlan, image_size, scan_sizes
from densechange.datasets.readers.layouts import Layout, layout_named
from densechange.datasets.readers.locate import locate
from densechange.datasets.readers.options import ChangeOptions
from densechange.datasets.transforms.geometry import Geometry, apply_geometry, draw_geometry, sample_rng
from densechange.datasets.io.images import IGNORE_INDEX, read_image_valid, to_float_image
from densechange.datasets.io.raster import RasterWindows, read_region
from densechange.datasets.plot import image_to_rgb, mask_to_rgb, prediction_to_mask, side_by_side

__all__ = ["ChangeDataset", "both_valid", "list_pairs"]


def list_pairs(dir_a: str | Path, dir_b: str | Path) -> list[tuple[Path, Path, str]]:
    """Images of two folders matched by file stem: ``[(path_a, path_b, name), ...]`` sorted by name.

    Files present in only one folder are skipped; no match at all is an error.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    for d in (dir_a, dir_b):
        if not d.is_dir():
            raise DatasetError(f"{d}: folder not found. Pass two folders of images of the same scenes, "
                               "matched by name.")
    a, b = index_folder(dir_a), index_folder(dir_b)
    names = sorted(set(a) & set(b))
    if not names:
        raise DatasetError(f"{dir_a} and {dir_b}: no image name appears in both folders "
                           "(images are matched by file name without extension).")
    return [(a[n], b[n], n) for n in names]


def both_valid(valid_a: np.ndarray | None, valid_b: np.ndarray | None) -> np.ndarray | None:
    """Where both dates hold data (None: everywhere)."""
    if valid_a is None or valid_b is None:
        return valid_b if valid_a is None else valid_a
    return valid_a & valid_b


class ChangeDataset(Dataset):
    """Change pairs as ``{"a": (C, H, W) float, "b": (C, H, W) float, "label": (H, W) long, "name": str}``.

    Args:
        root: dataset folder (see the module docstring for layouts).
        split: ``train``, ``val``, ``test`` or any name with a list file or a split folder; None: every
            complete pair of a dataset folder that holds the role folders itself.
        options: crops, flips and quarter turns and their seed, the ignored label value and
            incomplete samples (:class:`~densechange.datasets.readers.options.ChangeOptions`; default:
            whole pairs as stored).
        layout: a :class:`~densechange.datasets.readers.layouts.Layout` or the name of a known one;
            None (or ``auto``) detects the layout of ``root``.

    ``set_epoch`` must be called in the processes that load samples; with
    ``persistent_workers=True`` the workers keep the epoch they were started with.
    """

    def __init__(self, root: str | Path, split: str | None = "train", options: ChangeOptions | None = None, *,
                 layout: Layout | str | None = None) -> None:
        self.options = options = options or ChangeOptions()
        self.root = Path(root)
        self.split = split
        self.crop_size = options.crop_size
        self.flip, self.rot90 = bool(options.flip), bool(options.rot90)
        self.ignore_value = options.ignore_value
        self.seed = options.seed
        self.epoch = 0
        if isinstance(layout, str):
            layout = None if layout == "auto" else layout_named(layout, "change")
        found = locate(self.root, "change", split, layout=layout, skip_incomplete=options.skip_incomplete,
                       bands=options.bands)
        self.layout, self.names, self.paths = found.layout, found.names, found.paths
        if not self.names:
            raise DatasetError(f"{found.base}: no complete {'/'.join(found.layout.folders)} triple for split {split!r} "
                               f"({found.where}; files are matched by name without extension). Run "
                               f"`densechange check {self.root}` for details.")
        self.sizes = scan_sizes(self.paths) if self.crop_size is not None else None
        self.plan = CropPlan(self.sizes or [(0, 0)] * len(self.names), self.crop_size, options.crops_per_epoch)

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def num_classes(self) -> int:
        return 2

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random geometry ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def decode_label(self, stored: np.ndarray, path: Path, valid: np.ndarray | None = None) -> np.ndarray:
        """Stored label pixels -> int64 0 unchanged, 1 changed, ``IGNORE_INDEX`` ignored (by the layout's decoding).

        Args:
            stored: ``(h, w[, C])`` pixels of ``path`` as :func:`~densechange.datasets.io.labels.read_label` reads them.
            valid: where the label file holds data; elsewhere is ignored.
        """
        return change_ids(stored, self.layout.labels, ignore_value=self.ignore_value, valid=valid, where=path)

    def streamed(self, index: int) -> bool:
        """Whether sample ``index`` is a whole scene that evaluation reads window by window, not with ``__getitem__``.

        A scene layout's pair read without crops (WHU-CD's 32507x15354 dates are 6 GB each as float32),
        or a reader's (OSCD's cities, virtual rasters of band files): the scorer reads both dates under
        its windows from ``paths[index]`` and the label with :meth:`label_window`, so memory does not
        grow with the scene. Sample ``index`` is then pair ``index``.
        """
        return (self.layout.scene or bool(self.layout.reader)) and self.crop_size is None

    @contextlib.contextmanager
    def scene_labels(self, file: int, height: int, width: int) -> Iterator[Callable[[int, int, int, int], np.ndarray]]:
        """Pair ``file``'s label opened once for a whole scene: yields ``read(top, left, height, width)`` -> decoded window.

        The label must be ``height x width``, the size of its dates, as for a pair read whole (a smaller
        label would otherwise be scored as "ignored" past its edge). A whole-file format (PNG) is
        decoded once for all the windows, not once per window.
        """
        path = self.paths[file][2]
        with RasterWindows(path, expand_palette=False, use_nodata=False) as raster:
            _check_label_size(path, (raster.info.height, raster.info.width), (height, width))

            def read(top: int, left: int, rows: int, cols: int) -> np.ndarray:
                stored, valid = raster.read(top, left, rows, cols)
                return self.decode_label(blank_invalid(stored.copy(), valid), path, valid)

            yield read

    def label_window(self, file: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The decoded label of pair ``file`` over a window (padding past its edge and its no-data ignored).

        Only the label file's blocks under the window are decoded, so a scene's label is never read whole.
        """
        path = self.paths[file][2]
        stored, valid = read_label_window(path, top, left, height, width)
        return self.decode_label(stored, path, valid)

    def _whole(self, file: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Both dates, the label and where both dates hold data, read whole."""
        path_a, path_b, path_label = self.paths[file]
        (a, valid_a), (b, valid_b) = read_image_valid(path_a), read_image_valid(path_b)
        stored, valid_label = read_label(path_label)
        label = self.decode_label(stored, path_label, valid_label)
        if a.shape != b.shape:
            raise DatasetError(f"{path_a} is {a.shape[0]}x{a.shape[1]}x{a.shape[2]} but {path_b} is "
                               f"{b.shape[0]}x{b.shape[1]}x{b.shape[2]}: both dates must have the same size and bands.")
        _check_label_size(path_label, label.shape, a.shape[:2])
        return a, b, label, both_valid(valid_a, valid_b)

    def _crop(self, file: int, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """The crop window of both dates and the label; only the blocks under it are decoded."""
        path_a, path_b, path_label = self.paths[file]
        window = (geometry.top, geometry.left, self.crop_size, self.crop_size)
        (a, valid_a), (b, valid_b) = read_region(path_a, *window), read_region(path_b, *window)
        if a.shape != b.shape:
            raise DatasetError(f"{path_a} has {a.shape[2]} bands but {path_b} has {b.shape[2]}: both dates must have "
                               "the same bands.")
        label = self.label_window(file, *window)
        return a, b, label, both_valid(valid_a, valid_b)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Crop ``index`` of the epoch (with ``crop_size``), else pair ``index`` whole; flips and turns when on.

        No-data in either date, and padding past the images' edge, is ignored in the label.
        """
        file = self.plan.file_of(index)
        if self.crop_size is None and not (self.flip or self.rot90):
            a, b, label, valid = self._whole(file)
        else:
            height, width = self.sizes[file] if self.sizes is not None else image_size(self.paths[file][0])
            rng = sample_rng(self.seed, self.epoch, index)
            g = draw_geometry(rng, height, width, self.crop_size, flip=self.flip, rot90=self.rot90)
            a, b, label, valid = self._crop(file, g) if self.crop_size is not None else self._whole(file)
            if valid is not None:
                label[~valid] = IGNORE_INDEX
                valid = None
            turn = Geometry(hflip=g.hflip, vflip=g.vflip, rot90=g.rot90)
            a, b = apply_geometry(a, turn, None, fill=0), apply_geometry(b, turn, None, fill=0)
            label = apply_geometry(label, turn, None, fill=IGNORE_INDEX)
        if valid is not None:
            label[~valid] = IGNORE_INDEX
        return {"a": to_float_image(a), "b": to_float_image(b), "label": torch.from_numpy(label),
                "name": self.names[file]}

    @staticmethod
    def plot(sample: dict, prediction: torch.Tensor | np.ndarray | None = None) -> Image.Image:
        """A | B | label (| prediction) of a sample, as one picture."""
        panels = [image_to_rgb(sample["a"]), image_to_rgb(sample["b"]), mask_to_rgb(sample["label"])]
        if prediction is not None:
            panels.append(mask_to_rgb(prediction_to_mask(prediction)))
        return side_by_side(panels)


def _check_label_size(path: Path, label: tuple[int, ...], images: tuple[int, ...]) -> None:
    """A label must cover its images pixel for pixel."""
    if tuple(label) != tuple(images):
        raise DatasetError(f"{path} is {label[0]}x{label[1]} but its images are {images[0]}x{images[1]}: labels must "
                           "match the images pixel for pixel.")
