"""The checks of one sample's files: readable, on one grid, sizes that match, labels decoded as training decodes them.

:func:`densechange.datasets.tools.check.check_dataset` finds the samples of a layout and hands each
one here; every finding goes into the :class:`~densechange.datasets.tools.report.Report`.

Nothing is read whole: sizes, bands and grids come from the headers, and pixels from windows
(:func:`sample_windows`): every window of a file up to :data:`SAMPLE_PIXELS` pixels, so a dataset of
tiles is read completely, and an even spread of windows of a larger one, so a declared
1,000,000² raster is checked in seconds and in the memory of a few windows. The label statistics
(values, pixels per class) are those of the windows read.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import IGNORE_INDEX, normalize_mask, resolve_mask_mode, mask_values
from densechange.datasets.io.labels import blank_invalid, change_ids
from densechange.datasets.io.raster import (PILLOW_SUFFIXES, RasterInfo, RasterWindows, footprints_meet, raster_info,
                                            window_grid)
from densechange.datasets.tools.report import Report

__all__ = ["LARGE", "SAMPLE_PIXELS", "WINDOW", "sample_windows", "read_or_report", "check_grids", "record_image",
           "histogram", "check_image_mask_pair", "check_change_pair"]

LARGE = 4096 * 4096  # pixels above which a raster should be readable by window
SAMPLE_PIXELS = 4096 * 4096  # pixels of one file the check reads: all of a smaller file, a spread of windows of a larger
WINDOW = 1024  # side of the windows read


def sample_windows(height: int, width: int, budget: int = SAMPLE_PIXELS, side: int = WINDOW
                   ) -> list[tuple[int, int, int, int]]:
    """``(top, left, h, w)`` windows of a ``height x width`` raster: all of them when it has at most ``budget``
    pixels, else a grid of windows spread evenly over it (corners included) holding about ``budget`` pixels."""
    if height * width <= budget:
        return window_grid(height, width, side)
    rows, cols = math.ceil(height / side), math.ceil(width / side)
    per_axis = max(1, math.isqrt(max(1, budget // (side * side))))
    chosen_rows = sorted({round(i * (rows - 1) / max(1, per_axis - 1)) for i in range(min(per_axis, rows))})
    chosen_cols = sorted({round(i * (cols - 1) / max(1, per_axis - 1)) for i in range(min(per_axis, cols))})
    return [(r * side, c * side, min(side, height - r * side), min(side, width - c * side))
            for r in chosen_rows for c in chosen_cols]


def read_or_report(report: Report, path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, or None after reporting why the file cannot be read."""
    try:
        return reader(path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "unreadable")
        return None


def _windows(path: Path, info: RasterInfo, label: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The sampled windows of a file: ``(pixels (h, w, C), valid or None)``; a label as stored, no-data read as 0."""
    with RasterWindows(path, expand_palette=not label, use_nodata=not label) as raster:
        for window in sample_windows(info.height, info.width):
            pixels, valid = raster.read(*window)
            yield (blank_invalid(pixels.copy(), valid), valid) if label else (pixels, valid)


@dataclass(frozen=True)
class ImageFacts:
    """An image's size (header) and the bands and dtype of its pixels as read (palettes expanded)."""

    height: int
    width: int
    bands: int
    dtype: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.bands


def scan_image(path: Path) -> ImageFacts:
    """Read the sampled windows of an image (a corrupt block is an error) and say what it holds."""
    info = raster_info(path)
    bands, dtype = info.count, info.dtype
    for pixels, _ in _windows(path, info, label=False):
        bands, dtype = pixels.shape[2], str(pixels.dtype)
    return ImageFacts(info.height, info.width, bands, dtype)


class Undecodable(DatasetError):
    """A label read, whose values its decoding refuses (as opposed to a file that cannot be read)."""


@dataclass
class LabelScan:
    """A label's size, and what its sampled windows hold: stored values with their pixel counts (single-band
    decodings), or decoded class ids with theirs (decodings of several bands), and pixels without data."""

    height: int
    width: int
    values: Counter = field(default_factory=Counter)
    ids: Counter = field(default_factory=Counter)
    invalid: int = 0
    dtype: Any = None


def _count(counter: Counter, values: np.ndarray) -> None:
    if values.dtype in (np.uint8, np.uint16) or values.dtype.kind == "b":
        counts = np.bincount(values.ravel().astype(np.int64))
        counter.update({v: int(n) for v, n in enumerate(counts.tolist()) if n})
    else:
        found, counts = np.unique(values, return_counts=True)
        counter.update(dict(zip(found.tolist(), counts.tolist())))


def scan_label(path: Path, decode: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None) -> LabelScan:
    """Read the sampled windows of a label. ``decode``: stored window and validity -> class ids (for decodings that
    need every band); None: count the single-band stored values (:func:`mask_values`), decoded once for the file."""
    info = raster_info(path)
    scan = LabelScan(info.height, info.width)
    for stored, valid in _windows(path, info, label=True):
        try:
            decoded = decode(stored, valid) if decode is not None else mask_values(stored, path)
        except DatasetError as err:
            raise Undecodable(str(err)) from err
        if decode is not None:
            _count(scan.ids, decoded)
            continue
        values = decoded
        scan.dtype = values.dtype
        if valid is not None:
            scan.invalid += int((~valid).sum())
            values = values[valid]
        _count(scan.values, values)
    return scan


def _value_ids(scan: LabelScan, decode: Callable[[np.ndarray], np.ndarray]) -> None:
    """Decode the distinct stored values of ``scan`` at once and count their pixels per class id."""
    values = np.array(sorted(scan.values), dtype=scan.dtype if scan.dtype is not None else np.int64)[None, :]
    ids = decode(values)[0] if values.size else np.zeros(0, np.int64)
    for value, class_id in zip(values[0].tolist(), ids.tolist()):
        scan.ids[class_id] += scan.values[value]
    if scan.invalid:
        scan.ids[IGNORE_INDEX] += scan.invalid


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


def record_image(report: Report, path: Path, image: ImageFacts) -> None:
    if image.height * image.width > LARGE:
        check_windowed(report, path)
    report.sizes[(image.height, image.width)] += 1
    report.bands[image.bands] += 1
    report.band_of[str(path)] = image.bands
    report.dtypes[image.dtype] += 1


def histogram(ids: np.ndarray) -> dict[int, int]:
    """Pixels per class id (``IGNORE_INDEX`` included); a bincount unless the ids are huge."""
    if ids.size and ids.max() < 2**16:
        counts = np.bincount(ids.ravel() + 1)  # shifted so that IGNORE_INDEX (-1) lands in bin 0
        return {c - 1: int(n) for c, n in enumerate(counts.tolist()) if n}
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _scan_or_report(report: Report, path: Path, decode: Callable | None, kind: str) -> LabelScan | None:
    """:func:`scan_label`, or None after reporting why the file cannot be read (``unreadable``) or decoded (``kind``)."""
    try:
        return scan_label(path, decode)
    except Undecodable as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), kind)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "unreadable")
    return None


def _record_ids(report: Report, path: Path, scan: LabelScan, empty_message: str) -> None:
    report.class_pixels.update(scan.ids)
    if not any(class_id > 0 and n for class_id, n in scan.ids.items()):
        report.add("warning", path, empty_message, "empty-mask")


def check_image_mask_pair(report: Report, image_path: Path, mask_path: Path, mask_mode: str,
                           ignore_value: int | None, num_classes: int | None) -> None:
    image = read_or_report(report, image_path, scan_image)
    scan = _scan_or_report(report, mask_path, None, "unreadable")
    report.samples += 1
    if image is not None:
        record_image(report, image_path, image)
    if image is None or scan is None:
        return
    if (image.height, image.width) != (scan.height, scan.width):
        report.add("error", mask_path, f"mask is {scan.height}x{scan.width} but image {image_path.name} is "
                   f"{image.height}x{image.width}", "size-mismatch")
        return
    values = np.array(sorted(v for v in scan.values if v != ignore_value))
    if mask_mode == "auto" and (values != 0).any():  # an all-background mask fits every convention
        report.auto_modes.setdefault(resolve_mask_mode(values), []).append(mask_path)
    try:
        _value_ids(scan, lambda v: normalize_mask(v, mask_mode=mask_mode, ignore_value=ignore_value,
                                                  num_classes=num_classes, where=mask_path))
    except DatasetError as err:
        report.add("error", mask_path, str(err).removeprefix(f"{mask_path}: "), "bad-values")
        return
    _record_ids(report, mask_path, scan, "mask has no foreground pixels (all background); fine if intended")


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


def check_change_pair(report: Report, paths: tuple[Path, ...], labels: str, ignore_value: int | None) -> None:
    """Both dates and the label of a change pair; the label decoded by the layout's rule
    (:func:`~densechange.datasets.io.labels.change_ids`)."""
    path_a, path_b, path_label = paths
    a, b = read_or_report(report, path_a, scan_image), read_or_report(report, path_b, scan_image)
    decode = None if labels == "binary" else (
        lambda stored, valid: change_ids(stored, labels, ignore_value=ignore_value, valid=valid, where=path_label))
    scan = _scan_or_report(report, path_label, decode, "bad-values")
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
    if scan is None:
        return
    if a is not None and (scan.height, scan.width) != (a.height, a.width):
        report.add("error", path_label, f"label is {scan.height}x{scan.width} but image {path_a.name} is "
                   f"{a.height}x{a.width}", "size-mismatch")
        return
    if decode is None:
        try:
            _value_ids(scan, lambda v: change_ids(v, "binary", ignore_value=ignore_value, where=path_label))
        except DatasetError as err:
            report.add("error", path_label, str(err).removeprefix(f"{path_label}: "), "bad-values")
            return
    _record_ids(report, path_label, scan, "label has no changed pixels; fine if the pair has no change")
