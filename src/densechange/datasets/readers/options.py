"""How the readers cut and decode samples: one settings object per reader, checked as it is built.

The readers keep TorchGeo's constructor shape, ``(root, split, options, layout=...)``: the folder and
the split say *which* files, the layout *where* they are, and the options *how* samples come out of
them (crops, their seed, label decoding, incomplete samples). A config section maps onto the
options in one place (:func:`densechange.finetune.data.training_set`,
:func:`densechange.pretrain.data.build_labelled_dataset`), and each value is checked here, once.

Example:
    >>> ChangeDataset("/data/levir", "train", ChangeOptions(crop_size=256, flip=True, rot90=True))
    >>> ImageMaskDataset("/data/inria", "train", ImageMaskOptions(crop_size=256, ignore_value=255))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import check_mask_mode
from densechange.datasets.transforms.geometry import check_crop_size, check_seed

__all__ = ["SampleOptions", "ImageMaskOptions", "ChangeOptions"]


@dataclass(frozen=True)
class SampleOptions:
    """What both readers take: crops, their seed, the ignored label value and incomplete samples.

    Args:
        crop_size: when set, larger images are cropped at random and smaller ones padded (images 0,
            labels ``IGNORE_INDEX``) to ``crop_size x crop_size``; the crop of sample ``i`` in epoch
            ``e`` depends only on ``(seed, e, i)``. None: whole images.
        crops_per_epoch: with ``crop_size``, crops per epoch in proportion to each file's area; None:
            as many as tiles of ``crop_size`` would cover it, at least one (see
            :mod:`densechange.datasets.readers.crops`).
        seed: seed of the crops (and of the change reader's flips and turns).
        ignore_value: stored label value of pixels to ignore (e.g. 255 or a no-data value), or None.
        skip_incomplete: skip samples that lack a file, with a warning; default: an error naming them.
    """

    crop_size: Optional[int] = None
    crops_per_epoch: Optional[int] = None
    seed: int = 0
    ignore_value: Optional[int] = None
    skip_incomplete: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_size", check_crop_size(self.crop_size))
        object.__setattr__(self, "seed", check_seed(self.seed))


@dataclass(frozen=True)
class ImageMaskOptions(SampleOptions):
    """:class:`SampleOptions` plus the mask convention of an image–mask dataset.

    Args:
        mask_mode: how stored mask values map to classes (``auto``: the layout's, else decided from
            the values of all masks), see :func:`densechange.datasets.io.images.normalize_mask`.
        num_classes: number of classes of ``ids`` masks; scanned from the masks when None.
        one_crop_per_image: one crop of each image, whatever its size (held-out sets, probes).
    """

    mask_mode: str = "auto"
    num_classes: Optional[int] = None
    one_crop_per_image: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mask_mode(self.mask_mode)
        if self.num_classes is not None and self.num_classes < 2:
            raise DatasetError(f"num_classes={self.num_classes}: a segmentation needs at least 2 classes.")
        if self.mask_mode in ("binary255", "binary01") and self.num_classes not in (None, 2):
            raise DatasetError(f"num_classes={self.num_classes} contradicts mask_mode={self.mask_mode!r} (2 classes).")


@dataclass(frozen=True)
class ChangeOptions(SampleOptions):
    """:class:`SampleOptions` plus the change reader's training geometry, the same for both dates and the label.

    Args:
        flip: random horizontal and vertical flips.
        rot90: random quarter turns.
        bands: band names to read, in order, where the layout names its bands (OSCD: ``("B04", "B03",
            "B02")`` is RGB); None: every band.
    """

    flip: bool = False
    rot90: bool = False
    bands: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bands is not None:
            if isinstance(self.bands, str) or not self.bands:
                raise DatasetError(f"bands={self.bands!r}: give a list of band names, e.g. [B04,B03,B02].")
            object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
