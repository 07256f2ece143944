"""Image–mask datasets on disk, the input of dense pretraining.

Public datasets are read as they unpack (Inria Aerial Image Labeling, WHU Building, LoveDA,
OpenEarthMap; see :mod:`densechange.datasets.readers.layouts`), and any other tree a layout
describes (``data.layout.*``). The toolkit's own layouts are two of them, the first that exists wins::

    ROOT/A/*      + ROOT/label/*     (SaDL / Inria layout)
    ROOT/image/*  + ROOT/mask/*

with an optional ``ROOT/list/<split>.txt``, or inside ``ROOT/<split>/`` folders. Images and masks
are paired by file stem and may be in any raster format GDAL reads, with any number of bands. A
layout that fixes the mask convention (LoveDA's 0 = no-data) sets ``mask_mode`` and
``num_classes`` unless they are given. Training crops are read as windows and
drawn in proportion to each image's area (:mod:`densechange.datasets.readers.crops`).

Example:
    >>> ds = ImageMaskDataset("/data/inria", "train", ImageMaskOptions(crop_size=256))
    >>> s = ds[0]; s["image"].shape, s["mask"].shape        # (3, 256, 256), (256, 256)
    >>> ds.plot(s).save("sample.png")
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from densechange.datasets.errors import DatasetError
from densechange.datasets.readers.crops import CropPlan, scan_sizes
from densechange.datasets.readers.layouts import Layout, layout_named
from densechange.datasets.readers.locate import locate
from densechange.datasets.readers.options import ImageMaskOptions
from densechange.datasets.transforms.geometry import draw_geometry, sample_rng
from densechange.datasets.io.images import (IGNORE_INDEX, mask_values, normalize_mask, read_image_valid,
                                            resolve_mask_mode, to_float_image)
from densechange.datasets.io.labels import label_values, read_label, read_label_window
from densechange.datasets.io.raster import read_region
from densechange.datasets.plot import image_to_rgb, mask_to_rgb, prediction_to_mask, side_by_side

__all__ = ["ImageMaskDataset"]


class ImageMaskDataset(Dataset):
    """Image–mask pairs from a folder, as ``{"image": (C, H, W) float, "mask": (H, W) long, "name": str}``.

    Args:
        root: dataset folder (see the module docstring for layouts).
        split: name of a ``list/<split>.txt`` file; None, or no list folder, uses every pair.
        options: crops and their seed, the mask convention, the ignored value and incomplete pairs
            (:class:`~densechange.datasets.readers.options.ImageMaskOptions`; default: whole images, ``auto``).
        layout: a :class:`~densechange.datasets.readers.layouts.Layout` or the name of a known one;
            None (or ``auto``) detects the layout of ``root``.

    ``set_epoch`` must be called in the processes that load samples; with
    ``persistent_workers=True`` the workers keep the epoch they were started with.
    """

    def __init__(self, root: str | Path, split: str | None = None, options: ImageMaskOptions | None = None, *,
                 layout: Layout | str | None = None) -> None:
        self.options = options = options or ImageMaskOptions()
        self.root = Path(root)
        self.split = split
        self.crop_size = options.crop_size
        self.ignore_value = options.ignore_value
        self.seed = options.seed
        self.epoch = 0
        if isinstance(layout, str):
            layout = None if layout == "auto" else layout_named(layout, "image-mask")
        found = locate(self.root, "image-mask", split, layout=layout, skip_incomplete=options.skip_incomplete)
        self.layout, self.names = found.layout, found.names
        mask_mode, num_classes = options.mask_mode, options.num_classes
        self.mask_mode = found.layout.mask_mode if mask_mode == "auto" else mask_mode
        self._num_classes = num_classes if num_classes is not None or self.mask_mode != found.layout.mask_mode \
            else found.layout.num_classes
        image_folder, mask_folder = found.layout.folders
        if not self.names:
            raise DatasetError(f"{found.base}: no image with a mask of the same name in {image_folder}/ and "
                               f"{mask_folder}/ ({found.where}; any raster format GDAL reads). Run "
                               f"`densechange check {self.root}` for details.")
        self.image_paths = [p[0] for p in found.paths]
        self.mask_paths = [p[1] for p in found.paths]
        self.sizes = scan_sizes(list(zip(self.image_paths, self.mask_paths))) if self.crop_size is not None else None
        self.plan = CropPlan(self.sizes or [(0, 0)] * len(self.names), self.crop_size, options.crops_per_epoch,
                             options.one_crop_per_image)

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def _resolve(self) -> None:
        """Settle ``auto`` and the class count from the values of all masks, in one threaded pass.

        Deciding per file would let 255 be "foreground" in a 0/255 file and "class 255" in a file
        with one stray value; deciding once for the dataset cannot. Skipped when the config says
        enough (``mask_mode`` binary, or ``ids`` with ``num_classes``).
        """
        if self.mask_mode != "auto" and (self._num_classes is not None or self.mask_mode not in ("ids", "ids_from_1")):
            return
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
            found = list(pool.map(label_values, self.mask_paths))  # window by window: memory of one window each
        values = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        if self.mask_mode == "auto":
            mode = resolve_mask_mode(values, self.ignore_value)
            if mode == "ids" and self.ignore_value is None and 255 in values:
                raise DatasetError(
                    f"{self.root}: the masks hold the values {values.tolist()[:12]}: 255 next to other values than 0. "
                    "If 255 marks ignored pixels set ignore_value=255 (data.ignore_value); if they are class ids set "
                    f"mask_mode='ids'. `densechange check {self.root}` lists the files.")
            self.mask_mode = mode
        if self.mask_mode in ("ids", "ids_from_1") and self._num_classes is None:
            ids = values[values != self.ignore_value] if self.ignore_value is not None else values
            top = int(ids.max()) if ids.size else 1
            self._num_classes = max(top if self.mask_mode == "ids_from_1" else top + 1, 2)

    @property
    def num_classes(self) -> int:
        """2 for binary masks; for class ids, the argument or the largest id + 1 over all masks."""
        self._resolve()
        return 2 if self.mask_mode in ("binary255", "binary01") else int(self._num_classes)

    def decode_mask(self, stored: np.ndarray, path: Path, valid: np.ndarray | None = None) -> np.ndarray:
        """Stored mask pixels -> int64 class ids, ``IGNORE_INDEX`` ignored (by the dataset's mask convention).

        Args:
            stored: ``(h, w[, C])`` pixels of ``path`` as :func:`~densechange.datasets.io.labels.read_label` reads them.
            valid: where the mask file holds data; elsewhere is ignored.
        """
        self._resolve()
        return normalize_mask(mask_values(stored, path), mask_mode=self.mask_mode, ignore_value=self.ignore_value,
                              num_classes=self._num_classes, valid=valid, where=path)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Crop ``index`` of the epoch (with ``crop_size``), else image ``index`` whole.

        Only the crop's window is read; pixels that the image marks as no-data, and padding past its
        edge, are ignored in the mask.
        """
        file = self.plan.file_of(index)
        image_path, mask_path = self.image_paths[file], self.mask_paths[file]
        if self.crop_size is None:
            image, valid = read_image_valid(image_path)
            stored, valid_mask = read_label(mask_path)
            mask = self.decode_mask(stored, mask_path, valid_mask)
            if image.shape[:2] != mask.shape:
                raise DatasetError(f"{image_path}: image is {image.shape[0]}x{image.shape[1]} but its mask {mask_path} is "
                                   f"{mask.shape[0]}x{mask.shape[1]}. Masks must match their images pixel for pixel.")
        else:
            height, width = self.sizes[file]
            geometry = draw_geometry(sample_rng(self.seed, self.epoch, index), height, width, self.crop_size)
            window = (geometry.top, geometry.left, self.crop_size, self.crop_size)
            image, valid = read_region(image_path, *window)
            stored, valid_mask = read_label_window(mask_path, *window)
            mask = self.decode_mask(stored, mask_path, valid_mask)
        if valid is not None:
            mask[~valid] = IGNORE_INDEX
        return {"image": to_float_image(image), "mask": torch.from_numpy(mask), "name": self.names[file]}

    @staticmethod
    def plot(sample: dict, prediction: torch.Tensor | np.ndarray | None = None) -> Image.Image:
        """Image | mask (| prediction) of a sample, as one picture."""
        panels = [image_to_rgb(sample["image"]), mask_to_rgb(sample["mask"])]
        if prediction is not None:
            panels.append(mask_to_rgb(prediction_to_mask(prediction)))
        return side_by_side(panels)
