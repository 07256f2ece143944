"""Embedded synthetic data: aerial-like scenes with masks, and change pairs with real and pseudo-changes.

The demo and the tests need data that exist on every machine and are identical for a seed. Scenes
come from :mod:`densechange.datasets.synthetic.painter`. A change pair shares one layout between the two dates; the second
date gets *real* changes (buildings demolished or built, often as a new development), which are
the change label, as in LEVIR-CD, and changes that are not: ground changes (a cleared site, a new
road or parking lot, vegetation cleared or grown) and acquisition pseudo-changes (illumination,
white balance, haze, a season shift of vegetation and soil, another sun azimuth and shadow
length, another view angle, fresh sensor noise and a 1-2 pixel sub-pixel misregistration). The
label is in the frame of the first date.

Example:
    >>> image, classes = render_scene(seed=3)                  # (256, 256, 3) uint8, (256, 256) uint8
    >>> a, b, change = render_change_pair(seed=3)             # change: 0/1
    >>> ds = SyntheticChangeDataset(num_pairs=16, size=128)
    >>> write_change_dataset("/tmp/cd", num_pairs=20)         # A/, B/, label/, list/ on disk
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from densechange.datasets.readers.change import ChangeDataset
from densechange.datasets.errors import DatasetError
from densechange.datasets.readers.image_mask import ImageMaskDataset
from densechange.datasets.io.images import to_float_image, write_image, write_mask
from densechange.datasets.synthetic.painter import (BUILDING, CLASSES, Layout, buildings_mask, make_layout, paint, place_buildings, random_conditions,
                    rectangles, smooth_noise)

__all__ = [
    "CLASSES",
    "render_scene",
    "render_change_pair",
    "SyntheticImageMaskDataset",
    "SyntheticChangeDataset",
    "write_image_mask_dataset",
    "write_change_dataset",
]

_CLASS_CHOICES = ("building", "all")


def _child_seed(seed: int, index: int) -> int:
    """Independent per-sample seed derived from the dataset seed and the sample index."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise DatasetError(f"size={size!r}: synthetic scenes need an integer size of at least 32 pixels.")
    return int(size)


def render_scene(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One scene: image ``(H, W, 3)`` uint8 and class map ``(H, W)`` uint8 indexing :data:`CLASSES`."""
    rng = np.random.default_rng(seed)
    layout = make_layout(rng, _check_size(size))
    return paint(layout, random_conditions(rng, season=(0.0, 0.6), strength=0.6), rng), layout.classes()


def _shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate by ``(dy, dx)`` pixels (sub-pixel, bilinear), repeating the border: a misregistration."""
    h, w = image.shape[:2]
    m = int(np.ceil(max(abs(dy), abs(dx)))) + 1
    pad = np.pad(image.astype(np.float32), ((m, m), (m, m), (0, 0)), mode="edge")
    by, bx = int(np.floor(-dy)), int(np.floor(-dx))
    fy, fx = -dy - by, -dx - bx

    def take(oy: int, ox: int) -> np.ndarray:
        return pad[m + by + oy : m + by + oy + h, m + bx + ox : m + bx + ox + w]

    out = (1 - fy) * ((1 - fx) * take(0, 0) + fx * take(0, 1)) + fy * ((1 - fx) * take(1, 0) + fx * take(1, 1))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _ellipse(rng: np.random.Generator, size: int, radius: tuple[float, float]) -> np.ndarray:
    """A random axis-aligned ellipse, radii drawn from ``radius`` (fractions of the image)."""
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    ry, rx = rng.uniform(*radius, 2) * size
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _road_through(rng: np.random.Generator, site: np.ndarray, angle: float) -> np.ndarray:
    """A straight road along or across the street grid, through a random pixel of ``site``."""
    size = site.shape[0]
    py, px = np.argwhere(site)[rng.integers(int(site.sum()))]
    theta = angle + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.abs((xx - px) * np.sin(theta) - (yy - py) * np.cos(theta)) < rng.uniform(2.5, 4.0) * size / 256


def _second_layout(rng: np.random.Generator, before: Layout) -> tuple[Layout, np.ndarray]:
    """The layout of the second date and the change label: buildings demolished and built (0/1).

    Like LEVIR-CD, only building changes are labelled. Everything else that changes on the
    ground is an unlabelled change a detector must learn to leave alone: a construction site
    cleared of vegetation, an access road, a new parking lot, vegetation cleared or grown.
    """
    size = before.size
    keep = rng.random(len(before.buildings)) >= 0.25
    if keep.size and keep.all():
        keep[rng.integers(keep.size)] = False  # at least one demolition per pair
    kept = [b for b, k in zip(before.buildings, keep) if k]
    removed = [b for b, k in zip(before.buildings, keep) if not k]
    after = replace(before, buildings=kept, vegetation=before.vegetation.copy(), roads=before.roads.copy(),
                    paved=before.paved.copy(), soil=before.soil.copy())
    land = ~(before.water | before.roads)
    if rng.random() < 0.75:  # a new development: the site is cleared, an access road laid, houses built in a cluster
        site = _ellipse(rng, size, (0.18, 0.35)) & land & ~after.building_mask()
        after.vegetation &= ~site
        after.soil |= site & (smooth_noise(rng, size, 6) > 0.45)
        if rng.random() < 0.5 and site.any():
            after.roads |= site & _road_through(rng, site, before.grid_angle)
        new = place_buildings(rng, after.free_land(), int(rng.integers(8, 20)), before.grid_angle, region=site, attempts=8)
    else:
        new = place_buildings(rng, after.free_land(), int(rng.integers(3, 10)), before.grid_angle)
    after.buildings = kept + new
    if rng.random() < 0.6:  # vegetation cleared or grown (not a building change)
        after.vegetation ^= _ellipse(rng, size, (0.06, 0.16)) & land
    if rng.random() < 0.4:  # a new paved lot
        after.paved |= rectangles(rng, size, 1, before.grid_angle, (0.08, 0.2)) & land
    built = after.building_mask()
    for mask in (after.vegetation, after.paved, after.soil):
        mask &= ~built
    change = buildings_mask(removed, size) | buildings_mask(new, size)
    return after, change.astype(np.uint8)


def render_change_pair(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two dates of one scene: ``a``, ``b`` ``(H, W, 3)`` uint8 and the change label ``(H, W)`` uint8 0/1.

    The first date has the layout of ``render_scene(seed, size)`` (seen under other conditions).
    The label marks buildings demolished or built (in the first date's frame). Pseudo-changes
    are not labelled: another sun azimuth and shadow length, view angle (roofs lean another
    way), illumination, white balance and haze, a season shift of the vegetation and soil, fresh
    sensor noise, a sub-pixel misregistration of 1-2 pixels, and the unlabelled ground changes of
    :func:`_second_layout`.
    """
    rng = np.random.default_rng(seed)
    size = _check_size(size)
    before = make_layout(rng, size)
    after, change = _second_layout(rng, before)
    date_a = random_conditions(rng, season=(0.0, 0.3), strength=0.6)
    date_b = random_conditions(rng, sun=date_a.sun + rng.uniform(-0.6, 0.6), season=(0.3, 1.0))
    a = paint(before, date_a, rng)
    b = paint(after, date_b, rng)
    dy, dx = rng.uniform(-1, 1, 2)
    scale = rng.uniform(1, 2) / max(abs(dy), abs(dx), 1e-3)
    return a, _shift(b, dy * scale, dx * scale), change


class SyntheticImageMaskDataset(Dataset):
    """``num_images`` rendered scenes as :class:`~densechange.datasets.readers.image_mask.ImageMaskDataset` samples.

    Args:
        num_images: dataset length.
        size: side of the square images.
        seed: dataset seed; sample ``i`` is the scene of seed ``(seed, i)``.
        classes: ``"building"`` for a binary building mask, ``"all"`` for the 5 ids of :data:`CLASSES`.
    """

    def __init__(self, num_images: int = 64, size: int = 256, seed: int = 0, classes: str = "building") -> None:
        if classes not in _CLASS_CHOICES:
            raise DatasetError(f"classes={classes!r} is not one of {_CLASS_CHOICES}.")
        if int(num_images) < 1:
            raise DatasetError(f"num_images={num_images}: expected a positive number of synthetic images.")
        self.num_images, self.size, self.seed, self.classes = int(num_images), _check_size(size), int(seed), classes
        self.names = [f"synthetic_{i:05d}" for i in range(self.num_images)]

    def __len__(self) -> int:
        return self.num_images

    @property
    def num_classes(self) -> int:
        return 2 if self.classes == "building" else len(CLASSES)

    def set_epoch(self, epoch: int) -> None:
        """Samples do not depend on the epoch; kept so that training code treats all datasets alike."""

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(H, W, 3)`` uint8 and mask ``(H, W)`` uint8 class ids of sample ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, classes = render_scene(_child_seed(self.seed, index), self.size)
        return image, (classes == BUILDING).astype(np.uint8) if self.classes == "building" else classes

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        image, mask = self.arrays(index)
        mask_ids = torch.from_numpy(mask.astype(np.int64))
        return {"image": to_float_image(image), "mask": mask_ids, "name": self.names[index]}

    plot = staticmethod(ImageMaskDataset.plot)


class SyntheticChangeDataset(Dataset):
    """``num_pairs`` rendered change pairs as :class:`~densechange.datasets.readers.change.ChangeDataset` samples."""

    def __init__(self, num_pairs: int = 64, size: int = 256, seed: int = 0) -> None:
        if int(num_pairs) < 1:
            raise DatasetError(f"num_pairs={num_pairs}: expected a positive number of synthetic pairs.")
        self.num_pairs, self.size, self.seed = int(num_pairs), _check_size(size), int(seed)
        self.names = [f"synthetic_{i:05d}" for i in range(self.num_pairs)]

    def __len__(self) -> int:
        return self.num_pairs

    def set_epoch(self, epoch: int) -> None:
        """Samples do not depend on the epoch; kept so that training code treats all datasets alike."""

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``a``, ``b`` ``(H, W, 3)`` uint8 and the 0/1 change label ``(H, W)`` uint8 of pair ``index``."""
        if not 0 <= index < self.num_pairs:
            raise IndexError(f"index {index} out of range for {self.num_pairs} pairs")
        return render_change_pair(_child_seed(self.seed, index), self.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        a, b, change = self.arrays(index)
        return {"a": to_float_image(a), "b": to_float_image(b), "label": torch.from_numpy(change.astype(np.int64)),
                "name": self.names[index]}

    plot = staticmethod(ChangeDataset.plot)


def _split_counts(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` items by ``fractions`` with cumulative rounding, so the counts always add up to ``n``."""
    bounds = np.round(np.cumsum([0.0, *fractions]) / sum(fractions) * n).astype(int)
    return np.diff(bounds).tolist()


def _write_lists(root: Path, names: list[str], splits: list[tuple[str, float]]) -> None:
    counts = _split_counts(len(names), [f for _, f in splits])
    (root / "list").mkdir(parents=True, exist_ok=True)
    start = 0
    for (split, _), count in zip(splits, counts):
        (root / "list" / f"{split}.txt").write_text("".join(f"{n}.png\n" for n in names[start : start + count]))
        start += count


def write_image_mask_dataset(root: str | Path, num_images: int, size: int = 256, seed: int = 0,
                             classes: str = "building", val_fraction: float = 0.25) -> Path:
    """Write :class:`SyntheticImageMaskDataset` in the SaDL layout: ``A/``, ``label/``, ``list/{train,val}.txt``.

    Binary masks are stored 0/255 like Inria, ``classes="all"`` masks as class ids.
    """
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction={val_fraction}: expected a fraction in [0, 1).")
    root = Path(root)
    ds = SyntheticImageMaskDataset(num_images, size, seed, classes)
    for i, name in enumerate(ds.names):
        image, mask = ds.arrays(i)
        write_image(root / "A" / f"{name}.png", image)
        write_mask(root / "label" / f"{name}.png", mask * np.uint8(255) if classes == "building" else mask)
    _write_lists(root, ds.names, [("train", 1 - val_fraction), ("val", val_fraction)])
    return root


def write_change_dataset(root: str | Path, num_pairs: int, size: int = 256, seed: int = 0,
                         splits: tuple[tuple[str, float], ...] = (("train", 0.6), ("val", 0.2), ("test", 0.2))) -> Path:
    """Write :class:`SyntheticChangeDataset` in the BIT layout: ``A/``, ``B/``, ``label/`` (0/255), ``list/``."""
    if not splits or any(f < 0 for _, f in splits) or sum(f for _, f in splits) <= 0:
        raise DatasetError(f"splits={splits!r}: expected (name, fraction) pairs with non-negative fractions.")
    root = Path(root)
    ds = SyntheticChangeDataset(num_pairs, size, seed)
    for i, name in enumerate(ds.names):
        a, b, change = ds.arrays(i)
        write_image(root / "A" / f"{name}.png", a)
        write_image(root / "B" / f"{name}.png", b)
        write_mask(root / "label" / f"{name}.png", change * np.uint8(255))
    _write_lists(root, ds.names, list(splits))
    return root
