"""Datasets of the densechange toolkit: image–mask and change-detection folders, synthetic scenes, checks.

The import name ``datasets`` is shared with the Hugging Face ``datasets`` library; the two cannot
live in one environment, so importing this package there fails with an explanation instead of
mixing them up.

Example:
    >>> from datasets import ChangeDataset, ImageMaskDataset, IGNORE_INDEX
    >>> ds = ChangeDataset("/data/levir", "train", crop_size=256, flip=True, rot90=True)
"""
from __future__ import annotations

import importlib.metadata


def _refuse_name_clash() -> None:
    """Fail loudly when another distribution called ``datasets`` is installed next to this one."""
    try:
        importlib.metadata.distribution("datasets")
    except importlib.metadata.PackageNotFoundError:
        return
    raise ImportError(
        "The 'datasets' package of densechange shares its import name with the Hugging Face 'datasets' "
        "distribution, which is installed in this environment, so `import datasets` is ambiguous. "
        "Install densechange in a separate virtual environment (python -m venv .venv && "
        ".venv/bin/pip install -e .), or `pip uninstall datasets` from this one."
    )


_refuse_name_clash()

from .change import ChangeDataset, list_pairs  # noqa: E402
from .check import Problem, Report, check_dataset  # noqa: E402
from .errors import DatasetError  # noqa: E402
from .image_mask import ImageMaskDataset  # noqa: E402
from .io import (  # noqa: E402
    IGNORE_INDEX,
    normalize_mask,
    read_georef,
    read_image,
    read_mask,
    to_float_image,
    write_mask,
)
from .raster import Georef  # noqa: E402
from .synthetic import CLASSES, SyntheticChangeDataset, SyntheticImageMaskDataset  # noqa: E402

__all__ = [
    "IGNORE_INDEX",
    "CLASSES",
    "DatasetError",
    "ImageMaskDataset",
    "ChangeDataset",
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
