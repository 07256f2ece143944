"""Datasets of the densechange toolkit: image–mask and change-detection folders, synthetic scenes, checks.

It installs as ``densechange.datasets``, so it lives beside Hugging Face ``datasets`` in one
environment. Sub-packages split it by concern: ``io`` (rasters, images, masks, dataset files),
``readers`` (the dataset classes, crop plans, batching), ``synthetic`` (the scene painter and its
datasets), ``transforms`` (photometric, geometry) and ``tools`` (check, tile, stack).

Example:
    >>> from densechange.datasets import ChangeDataset, ChangeOptions, IGNORE_INDEX
    >>> ds = ChangeDataset("/data/levir", "train", ChangeOptions(crop_size=256, flip=True, rot90=True))
"""
from __future__ import annotations

from densechange.datasets.readers.change import ChangeDataset, list_pairs
from densechange.datasets.tools.check import Problem, Report, check_dataset
from densechange.datasets.errors import DatasetError
from densechange.datasets.readers.image_mask import ImageMaskDataset
from densechange.datasets.readers.options import ChangeOptions, ImageMaskOptions
from densechange.datasets.io.images import (
    IGNORE_INDEX,
    normalize_mask,
    read_georef,
    read_image,
    read_mask,
    to_float_image,
    write_mask,
)
from densechange.datasets.io.raster import Georef
from densechange.datasets.synthetic.samples import CLASSES, SyntheticChangeDataset, SyntheticImageMaskDataset

__all__ = [
    "IGNORE_INDEX",
    "CLASSES",
    "DatasetError",
    "ImageMaskDataset",
    "ImageMaskOptions",
    "ChangeDataset",
    "ChangeOptions",
    "list_pairs",
    "SyntheticImageMaskDataset",
    "SyntheticChangeDataset",
    "check_dataset",
    "Report",
    "Problem",
    "read_image",
    "read_mask",
    "to_float_image",
    "normalize_mask",
    "read_georef",
    "Georef",
    "write_mask",
]
