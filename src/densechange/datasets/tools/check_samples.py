"""The checks of one sample's files: readable, on one grid, sizes that match, labels decoded as training decodes them.

:func:`densechange.datasets.tools.check.check_dataset` finds the samples of a layout and hands each
one here; every finding goes into the :class:`~densechange.datasets.tools.report.Report`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import normalize_mask, present_values, read_image, resolve_mask_mode, mask_values
from densechange.datasets.io.labels import change_ids, read_label
from densechange.datasets.io.raster import PILLOW_SUFFIXES, footprints_meet, raster_info
from densechange.datasets.tools.report import Report

__all__ = ["LARGE", "read_or_report", "check_grids", "record_image", "histogram", "check_label", "check_image_mask_pair",
           "check_change_label", "check_change_pair"]

LARGE = 4096 * 4096  # pixels above which a raster should be readable by window


def read_or_report(report: Report, path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, or None after reporting why the file cannot be read."""
    try:
        return reader(path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "unreadable")
        return None


def check_grids(report: Report, path_a: Path, path_b: Path) -> str:
    """``same``, ``resampled`` (georeferenced on different grids: B will be resampled) or ``apart`` (no overlap)."""
    try:
        info_a, info_b = raster_info(path_a), raster_info(path_b)
    except DatasetError:
        return "same"  # already reported as unreadable
    ga, gb = info_a.georef, info_b.georef
    if not (ga.georeferenced and gb.georeferenced) or ga.same_grid(gb, info_a.height, info_a.width, info_b.height,
                                                                    info_b.width):
        return "same"
    if not footprints_meet(info_a, info_b):
        report.add("error", path_b, f"B's footprint does not intersect A's ({path_a.name}): the two dates show "
                   "different places", "no-overlap")
        return "apart"
    report.add("warning", path_b, f"B lies on another grid than A {path_a.name} (CRS, resolution or extent); "
               "`densechange predict` resamples it bilinearly onto A's grid", "grid-differs")
    return "resampled"


def check_windowed(report: Report, path: Path) -> None:
    """Large rasters in a format that cannot be read by window make every training crop decode the whole file."""
    try:
        info = raster_info(path)
    except DatasetError:
        return
    if info.area > LARGE and (not info.windowed or path.suffix.lower() in PILLOW_SUFFIXES):
        report.add("warning", path, f"{info.height}x{info.width} {info.driver} raster that cannot be read by window: every "
                   "training crop decodes the whole file. Cut it into tiles with `densechange tile SRC DST "
                   "size=512`, or convert it to a tiled GeoTIFF.", "not-windowed")


def record_image(report: Report, path: Path, image: np.ndarray) -> None:
    if image.shape[0] * image.shape[1] > LARGE:
        check_windowed(report, path)
    report.sizes[image.shape[:2]] += 1
    report.bands[image.shape[2]] += 1
    report.band_of[str(path)] = image.shape[2]
    report.dtypes[str(image.dtype)] += 1


def histogram(ids: np.ndarray) -> dict[int, int]:
    """Pixels per class id (``IGNORE_INDEX`` included); a bincount unless the ids are huge."""
    if ids.size and ids.max() < 2**16:
        counts = np.bincount(ids.ravel() + 1)  # shifted so that IGNORE_INDEX (-1) lands in bin 0
        return {c - 1: int(n) for c, n in enumerate(counts.tolist()) if n}
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def check_label(report: Report, path: Path, mask: np.ndarray, *, mask_mode: str, ignore_value: int | None,
                 num_classes: int | None, empty_message: str, valid: np.ndarray | None = None) -> None:
    values = present_values(mask)
    values = values[values != ignore_value] if ignore_value is not None else values
    if mask_mode == "auto" and (values != 0).any():  # an all-background mask fits every convention
        report.auto_modes.setdefault(resolve_mask_mode(values), []).append(path)
    try:
        ids = normalize_mask(mask, mask_mode=mask_mode, ignore_value=ignore_value, num_classes=num_classes, valid=valid,
                             where=path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "bad-values")
        return
    report.class_pixels.update(histogram(ids))
    if not (ids > 0).any():
        report.add("warning", path, empty_message, "empty-mask")


def read_mask_values(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A mask's ``(H, W)`` values (its no-data read as 0) and where it holds data."""
    stored, valid = read_label(path)
    return mask_values(stored, path), valid


def check_image_mask_pair(report: Report, image_path: Path, mask_path: Path, mask_mode: str,
                           ignore_value: int | None, num_classes: int | None) -> None:
    image = read_or_report(report, image_path, read_image)
    read = read_or_report(report, mask_path, read_mask_values)
    report.samples += 1
    if image is not None:
        record_image(report, image_path, image)
    if image is None or read is None:
        return
    mask, valid = read
    if image.shape[:2] != mask.shape:
        report.add("error", mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]} but image {image_path.name} is "
                   f"{image.shape[0]}x{image.shape[1]}", "size-mismatch")
        return
    check_label(report, mask_path, mask, mask_mode=mask_mode, ignore_value=ignore_value, num_classes=num_classes,
                 empty_message="mask has no foreground pixels (all background); fine if intended", valid=valid)


def check_change_label(report: Report, path: Path, stored: np.ndarray, labels: str, ignore_value: int | None,
                       valid: np.ndarray | None = None) -> None:
    """A label decoded as training decodes it (:func:`~densechange.datasets.io.labels.change_ids`, by the layout's rule)."""
    empty = "label has no changed pixels; fine if the pair has no change"
    try:
        ids = change_ids(stored, labels, ignore_value=ignore_value, valid=valid, where=path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "bad-values")
        return
    report.class_pixels.update(histogram(ids))
    if not (ids > 0).any():
        report.add("warning", path, empty, "empty-mask")


def check_change_pair(report: Report, paths: tuple[Path, ...], labels: str, ignore_value: int | None) -> None:
    path_a, path_b, path_label = paths
    a, b = read_or_report(report, path_a, read_image), read_or_report(report, path_b, read_image)
    read = read_or_report(report, path_label, read_label)
    report.samples += 1
    for path, image in ((path_a, a), (path_b, b)):
        if image is not None:
            record_image(report, path, image)
    grids = check_grids(report, path_a, path_b) if a is not None and b is not None else "same"
    if grids == "apart":
        return
    if a is not None and b is not None and a.shape != b.shape:
        resampled = " (`densechange predict` resamples B onto A's grid, but training pairs pixels one to one)"
        report.add("error", path_b, "B is {}x{}x{} but A {} is {}x{}x{}; both dates must match{}".format(
            *b.shape, path_a.name, *a.shape, resampled if grids == "resampled" else ""), "size-mismatch")
        return
    if read is None:
        return
    label, valid = read
    if a is not None and label.shape[:2] != a.shape[:2]:
        report.add("error", path_label, f"label is {label.shape[0]}x{label.shape[1]} but image {path_a.name} is "
                   f"{a.shape[0]}x{a.shape[1]}", "size-mismatch")
        return
    check_change_label(report, path_label, label, labels, ignore_value, valid)
