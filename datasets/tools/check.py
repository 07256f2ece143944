"""Inspect a dataset folder before training and report every problem, each with its file.

A training run stops at the first bad file, hours in; the check reads every file up front and
lists all problems at once. A problem is an *error* when training on the dataset would fail on it
(a listed sample with missing files, a corrupt file, a size mismatch, unexpected label values) and
a *warning* when training would run but the user probably wants to know (an image without a mask
that is skipped, an empty mask).

Example:
    >>> report = check_dataset("/data/levir")
    >>> print(report.format()); report.fatal
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densechange.datasets.readers.change import CHANGE_FOLDERS
from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.files import ignored_files, list_splits, read_list, scan_folder
from densechange.datasets.readers.image_mask import IMAGE_MASK_LAYOUTS
from densechange.datasets.io.images import IGNORE_INDEX, MASK_MODES, normalize_mask, present_values, read_image, read_mask, resolve_mask_mode
from densechange.datasets.io.raster import PILLOW_SUFFIXES, footprints_meet, raster_info

__all__ = ["KINDS", "Problem", "Report", "check_dataset"]

KINDS = ("auto", "image-mask", "change")
LARGE = 4096 * 4096  # pixels above which a raster should be readable by window


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is ``error`` (training would fail) or ``warning``; ``kind`` groups the summary."""

    severity: str
    path: str
    message: str
    kind: str = "other"

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.path}: {self.message}"


@dataclass
class Report:
    """Problems found in a dataset and what it holds (sizes, bands, dtypes, pixels per class)."""

    root: Path
    kind: str
    problems: list[Problem] = field(default_factory=list)
    samples: int = 0
    sizes: Counter = field(default_factory=Counter)
    bands: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    class_pixels: Counter = field(default_factory=Counter)
    band_of: dict[str, int] = field(default_factory=dict, repr=False)
    auto_modes: dict[str, list[Path]] = field(default_factory=dict, repr=False)  # mask files per resolved auto rule

    @property
    def fatal(self) -> bool:
        """True when at least one problem would stop training."""
        return any(p.severity == "error" for p in self.problems)

    def add(self, severity: str, path: Path | str, message: str, kind: str) -> None:
        self.problems.append(Problem(severity, str(path), message, kind))

    def counts(self) -> Counter:
        """Number of problems per kind."""
        return Counter(p.kind for p in self.problems)

    def format(self) -> str:
        """Human-readable report: every problem, then a summary."""
        lines = [f"dataset {self.root} ({self.kind}, {self.samples} samples read)"]
        lines += [str(p) for p in self.problems]
        errors = sum(p.severity == "error" for p in self.problems)
        per_kind = ", ".join(f"{k}: {n}" for k, n in sorted(self.counts().items()))
        summary = f"problems: {errors} errors, {len(self.problems) - errors} warnings"
        lines.append(summary + (f" ({per_kind})" if per_kind else ""))
        if self.sizes:
            lines.append("image sizes: " + ", ".join(f"{h}x{w} ({n})" for (h, w), n in self.sizes.most_common()))
            lines.append("bands: " + ", ".join(f"{b} ({n})" for b, n in sorted(self.bands.items()))
                         + "; dtypes: " + ", ".join(f"{d} ({n})" for d, n in sorted(self.dtypes.items())))
        total = sum(self.class_pixels.values())
        if total:
            names = {IGNORE_INDEX: "ignored"}
            lines.append("pixels per class: " + ", ".join(
                f"{names.get(c, c)}: {n} ({100 * n / total:.2f}%)" for c, n in sorted(self.class_pixels.items())))
        lines.append("result: " + ("FAIL, fix the errors above before training" if self.fatal else "OK"))
        return "\n".join(lines)


def _detect_kind(root: Path) -> str | None:
    def has_triple(d: Path) -> bool:
        return all((d / s).is_dir() for s in CHANGE_FOLDERS)

    if has_triple(root) or any(has_triple(d) for d in root.iterdir() if d.is_dir()):
        return "change"
    if any((root / i).is_dir() and (root / m).is_dir() for i, m in IMAGE_MASK_LAYOUTS):
        return "image-mask"
    return None


def _scan(report: Report, folders: list[Path]) -> list[dict[str, Path]]:
    """Index each folder, reporting files with a shared name and files of unsupported formats."""
    indexes = []
    for folder in folders:
        index, clashes = scan_folder(folder)
        for kept, other in clashes:
            report.add("error", other, f"same sample name as {kept.name}; keep one file per name", "duplicate-name")
        others = ignored_files(folder)
        if others:
            report.add("warning", folder, f"{len(others)} files of unsupported formats are ignored: "
                       f"{format_names([p.name for p in others])}", "unsupported-file")
        indexes.append(index)
    return indexes


def _check_lists(report: Report, root: Path, folders: list[Path], indexes: list[dict[str, Path]]) -> set[str]:
    """Report list entries without files; return every listed name."""
    listed: set[str] = set()
    for split in list_splits(root):
        list_file = root / "list" / f"{split}.txt"
        try:
            names = read_list(list_file)
        except DatasetError as err:
            report.add("error", list_file, str(err), "unreadable")
            continue
        listed.update(names)
        for name in names:
            lacking = [f.name + "/" for f, ix in zip(folders, indexes) if name not in ix]
            if lacking:
                report.add("error", list_file, f"entry {name!r} has no file in {', '.join(lacking)}", "list-missing")
    return listed


def _check_pairing(report: Report, folders: list[Path], indexes: list[dict[str, Path]], listed: set[str],
                   lists_used: bool) -> list[str]:
    """Report samples that lack a file in some folder; return the complete sample names.

    Without list files every sample would be trained on, so a missing partner is an error (training
    refuses to start unless ``data.skip_incomplete=true``); with list files, an unlisted incomplete
    sample is never used, and only a warning.
    """
    names = sorted(set().union(*indexes))
    complete = []
    for name in names:
        lacking = [f.name + "/" for f, ix in zip(folders, indexes) if name not in ix]
        if not lacking:
            complete.append(name)
            continue
        present = next(ix[name] for ix in indexes if name in ix)
        if name in listed:  # already reported by _check_lists
            continue
        if lists_used:
            report.add("warning", present, f"no matching file in {', '.join(lacking)}; the sample is in no list "
                       "file, so it is never used", "missing-pair")
        else:
            report.add("error", present, f"no matching file in {', '.join(lacking)}; training refuses to start "
                       "(add the file, remove this one, or set data.skip_incomplete=true to skip it)", "missing-pair")
    return complete


def _read(report: Report, path: Path, reader: Callable[[Path], np.ndarray]) -> np.ndarray | None:
    """``reader(path)``, or None after reporting why the file cannot be read."""
    try:
        return reader(path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "unreadable")
        return None


def _check_grids(report: Report, path_a: Path, path_b: Path) -> str:
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


def _check_windowed(report: Report, path: Path) -> None:
    """Large rasters in a format that cannot be read by window make every training crop decode the whole file."""
    try:
        info = raster_info(path)
    except DatasetError:
        return
    if info.area > LARGE and (not info.windowed or path.suffix.lower() in PILLOW_SUFFIXES):
        report.add("warning", path, f"{info.height}x{info.width} {info.driver} raster that cannot be read by window: every "
                   "training crop decodes the whole file. Cut it into tiles with `densechange tile SRC DST "
                   "--size 512`, or convert it to a tiled GeoTIFF.", "not-windowed")


def _record_image(report: Report, path: Path, image: np.ndarray) -> None:
    if image.shape[0] * image.shape[1] > LARGE:
        _check_windowed(report, path)
    report.sizes[image.shape[:2]] += 1
    report.bands[image.shape[2]] += 1
    report.band_of[str(path)] = image.shape[2]
    report.dtypes[str(image.dtype)] += 1


def _histogram(ids: np.ndarray) -> dict[int, int]:
    """Pixels per class id (``IGNORE_INDEX`` included); a bincount unless the ids are huge."""
    if ids.size and ids.max() < 2**16:
        counts = np.bincount(ids.ravel() + 1)  # shifted so that IGNORE_INDEX (-1) lands in bin 0
        return {c - 1: int(n) for c, n in enumerate(counts.tolist()) if n}
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _check_label(report: Report, path: Path, mask: np.ndarray, *, mask_mode: str, ignore_value: int | None,
                 num_classes: int | None, empty_message: str) -> None:
    values = present_values(mask)
    values = values[values != ignore_value] if ignore_value is not None else values
    if mask_mode == "auto" and (values != 0).any():  # an all-background mask fits every convention
        report.auto_modes.setdefault(resolve_mask_mode(values), []).append(path)
    try:
        ids = normalize_mask(mask, mask_mode=mask_mode, ignore_value=ignore_value, num_classes=num_classes, where=path)
    except DatasetError as err:
        report.add("error", path, str(err).removeprefix(f"{path}: "), "bad-values")
        return
    report.class_pixels.update(_histogram(ids))
    if not (ids > 0).any():
        report.add("warning", path, empty_message, "empty-mask")


def _check_image_mask(report: Report, root: Path, mask_mode: str, ignore_value: int | None,
                      num_classes: int | None) -> None:
    image_dir, mask_dir = next((root / i, root / m) for i, m in IMAGE_MASK_LAYOUTS
                               if (root / i).is_dir() and (root / m).is_dir())
    folders = [image_dir, mask_dir]
    indexes = _scan(report, folders)
    listed = _check_lists(report, root, folders, indexes)
    for name in _check_pairing(report, folders, indexes, listed, bool(list_splits(root))):
        image_path, mask_path = indexes[0][name], indexes[1][name]
        image = _read(report, image_path, read_image)
        mask = _read(report, mask_path, read_mask)
        report.samples += 1
        if image is not None:
            _record_image(report, image_path, image)
        if image is None or mask is None:
            continue
        if image.shape[:2] != mask.shape:
            report.add("error", mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]} but image {image_path.name} is "
                       f"{image.shape[0]}x{image.shape[1]}", "size-mismatch")
            continue
        _check_label(report, mask_path, mask, mask_mode=mask_mode, ignore_value=ignore_value, num_classes=num_classes,
                     empty_message="mask has no foreground pixels (all background); fine if intended")
    if len(report.auto_modes) > 1:  # auto decides once per dataset; files that disagree would be read inconsistently
        kinds = "; ".join(f"{mode}: {len(paths)} files, e.g. {paths[0].name}" for mode, paths in sorted(report.auto_modes.items()))
        report.add("error", mask_dir, f"masks use different value conventions ({kinds}). The dataset reads them all "
                   "with one rule, so some would be misread: fix the odd files, or pass --mask-mode and --ignore-value.",
                   "mixed-mask-modes")
    ids = sorted(c for c in report.class_pixels if c != IGNORE_INDEX)
    if num_classes is None and ids and ids[-1] >= max(8, 2 * len(ids)):
        report.add("warning", mask_dir, f"mask values {ids} are taken as class ids, so there would be {ids[-1] + 1} "
                   f"classes, most of them empty. If {ids[-1]} marks ignored pixels pass --ignore-value {ids[-1]}; "
                   "if the masks are binary pass --mask-mode binary255 or binary01", "sparse-ids")


def _check_change_folder(report: Report, root: Path, folder: Path, ignore_value: int | None, use_lists: bool) -> None:
    folders = [folder / s for s in CHANGE_FOLDERS]
    indexes = _scan(report, folders)
    listed = _check_lists(report, root, folders, indexes) if use_lists else set()
    for name in _check_pairing(report, folders, indexes, listed, use_lists and bool(list_splits(root))):
        path_a, path_b, path_label = (ix[name] for ix in indexes)
        a, b = _read(report, path_a, read_image), _read(report, path_b, read_image)
        label = _read(report, path_label, read_mask)
        report.samples += 1
        for path, image in ((path_a, a), (path_b, b)):
            if image is not None:
                _record_image(report, path, image)
        grids = _check_grids(report, path_a, path_b) if a is not None and b is not None else "same"
        if grids == "apart":
            continue
        if a is not None and b is not None and a.shape != b.shape:
            resampled = " (`densechange predict` resamples B onto A's grid, but training pairs pixels one to one)"
            report.add("error", path_b, "B is {}x{}x{} but A {} is {}x{}x{}; both dates must match{}".format(
                *b.shape, path_a.name, *a.shape, resampled if grids == "resampled" else ""), "size-mismatch")
            continue
        if label is None:
            continue
        if a is not None and label.shape != a.shape[:2]:
            report.add("error", path_label, f"label is {label.shape[0]}x{label.shape[1]} but image {path_a.name} is "
                       f"{a.shape[0]}x{a.shape[1]}", "size-mismatch")
            continue
        _check_label(report, path_label, label, mask_mode="auto", ignore_value=ignore_value, num_classes=2,
                     empty_message="label has no changed pixels; fine if the pair has no change")


def check_dataset(
    root: str | Path,
    kind: str = "auto",
    *,
    ignore_value: int | None = None,
    mask_mode: str = "auto",
    num_classes: int | None = None,
) -> Report:
    """Read every file of the dataset at ``root`` and report all problems (see the module docstring).

    Args:
        root: dataset folder in one of the layouts of :class:`~densechange.datasets.readers.image_mask.ImageMaskDataset`
            or :class:`~densechange.datasets.readers.change.ChangeDataset`.
        kind: ``image-mask``, ``change``, or ``auto`` (a folder with A/, B/ and label/ is a change dataset).
        ignore_value: stored mask/label value of ignored pixels.
        mask_mode: mask convention of image–mask datasets (change labels are always 0/1 or 0/255).
        num_classes: bound on class ids of image–mask datasets.
    """
    root = Path(root)
    if kind not in KINDS:
        raise DatasetError(f"kind={kind!r} is not one of {KINDS}.")
    if mask_mode not in MASK_MODES:
        raise DatasetError(f"mask_mode={mask_mode!r} is not one of {MASK_MODES}.")
    report = Report(root, kind)
    if not root.is_dir():
        report.add("error", root, "dataset folder not found", "layout")
        return report
    detected = _detect_kind(root)
    report.kind = kind if kind != "auto" else (detected or "unknown")
    has_image_mask = any((root / i).is_dir() and (root / m).is_dir() for i, m in IMAGE_MASK_LAYOUTS)
    if report.kind == "image-mask" and not has_image_mask:
        report.add("error", root, "expected A/ + label/ or image/ + mask/ folders", "layout")
    elif report.kind == "change" and detected != "change":
        report.add("error", root, "expected A/, B/, label/ folders, or <split>/A/, B/, label/", "layout")
    elif report.kind == "unknown":
        report.add("error", root, "no dataset layout found; expected A/ + label/ or image/ + mask/ (image-mask), "
                   "or A/ + B/ + label/ with optional list/, or <split>/{A,B,label}/ (change)", "layout")
    elif report.kind == "image-mask":
        _check_image_mask(report, root, mask_mode, ignore_value, num_classes)
    else:
        if all((root / s).is_dir() for s in CHANGE_FOLDERS):
            _check_change_folder(report, root, root, ignore_value, use_lists=True)
            if not list_splits(root):
                report.add("warning", root, f"no list/ folder: train, val and test would all use the same {report.samples} "
                           "pairs, so validation would score training data. Add list/{train,val,test}.txt.", "no-lists")
        for sub in sorted(d for d in root.iterdir() if d.is_dir() and all((d / s).is_dir() for s in CHANGE_FOLDERS)):
            _check_change_folder(report, root, sub, ignore_value, use_lists=False)
    if not report.fatal and report.kind != "unknown" and report.samples == 0:
        report.add("error", root, "no complete sample found (files are matched by name without extension)",
                   "no-samples")
    if len(report.bands) > 1:
        usual = report.bands.most_common(1)[0][0]
        for path, bands in report.band_of.items():
            if bands != usual:
                report.add("error", path, f"{bands} bands where most images have {usual}; a batch needs one count",
                           "band-mismatch")
    return report
