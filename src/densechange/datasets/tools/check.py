"""Inspect a dataset folder before training and report every problem, each with its file.

A training run stops at the first bad file, hours in; the check reads every file up front and
lists all problems at once. A problem is an *error* when training on the dataset would fail on it
(a listed sample with missing files, a corrupt file, a size mismatch, unexpected label values) and
a *warning* when training would run but the user probably wants to know (an image without a mask
that is skipped, an empty mask).

The check reads the layouts the datasets read (:mod:`densechange.datasets.readers.layouts`): it
names the layout it recognised, checks every split folder and list file of it, and decodes labels
the way training will (a grey threshold for CDD's JPEG labels, "not white" for SECOND, ...). A
layout described by ``data.layout.*`` is checked the same way, and a folder it names that does not
exist is an error naming the folder.

Example:
    >>> report = check_dataset("/data/S2Looking")
    >>> print(report.format()); report.fatal
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


from densechange.datasets.errors import DatasetError
from densechange.datasets.io.files import read_list, scan_folder, skipped_files
from densechange.datasets.io.images import IGNORE_INDEX, check_mask_mode
from densechange.datasets.readers.layouts import Layout, layout_named, layouts_of
from densechange.datasets.readers.locate import (LINK_BACK, Part, expected, find_layout, folder_links_back,
                                                 holds_folders, list_files, locate,
                                                 missing_folders, parts_for_split, parts_of, scene_index,
                                                 split_folders)
from densechange.datasets.tools.check_samples import check_change_pair, check_image_mask_pair
from densechange.datasets.tools.report import Problem, Report

__all__ = ["KINDS", "Problem", "Report", "check_dataset"]

KINDS = ("auto", "image-mask", "change")


def _scan(report: Report, folders: list[Path]) -> list[dict[str, Path]]:
    """Index each folder, reporting files with a shared name and files of unsupported formats."""
    indexes = []
    for folder in folders:
        index, clashes = scan_folder(folder)
        for kept, other in clashes:
            report.add("error", other, f"same sample name as {kept.name}; keep one file per name", "duplicate-name")
        for why, skipped in skipped_files(folder).items():
            kind = "unsupported-file" if why == "of unsupported formats" else "skipped-file"
            report.add("warning", folder, f"{len(skipped)} files {why} are skipped: "
                       f"{', '.join(p.name for p in skipped)}", kind)
        indexes.append(index)
    return indexes


def _check_lists(report: Report, lists: dict[str, Path], folders: list[Path], indexes: list[dict[str, Path]]) -> set[str]:
    """Report list entries without files; return every listed name."""
    listed: set[str] = set()
    for list_file in lists.values():
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


def _merge(report: Report, parts: list[Part], layout: Layout) -> tuple[list[Path], list[dict[str, Path]]]:
    """One index per role over every part, reporting names found in two group folders."""
    indexes: list[dict[str, Path]] = [{} for _ in layout.folders]
    for part in parts:
        found = _scan(report, [f for f in part.folders if f.is_dir()])
        scanned = iter(found)
        for role, folder in enumerate(part.folders):
            if not folder.is_dir():
                continue
            index = next(scanned)
            if layout.scene:
                try:
                    index = scene_index(index, folder, part.group or "scene")
                except DatasetError as err:
                    report.add("error", folder, str(err).removeprefix(f"{folder}: "), "duplicate-name")
                    index = {}
            for name, path in index.items():
                if name in indexes[role]:
                    report.add("error", path, f"same sample name as {indexes[role][name]} in another group folder; "
                               "names must be unique across groups", "duplicate-name")
                else:
                    indexes[role][name] = path
    return [Path(f) for f in layout.folders], indexes


def _check_unit(report: Report, layout: Layout, parts: list[Part], lists: dict[str, Path], check_pair: Callable,
                only: str | None = None) -> None:
    """Pairing, list entries and every complete sample of one split folder (or of the flat dataset folder).

    ``only``: the one split of ``lists`` being checked; only its listed samples are read.
    """
    folders, indexes = _merge(report, parts, layout)
    listed = _check_lists(report, lists, folders, indexes)
    if only is not None:
        for name in sorted(n for n in listed if all(n in ix for ix in indexes)):
            check_pair(tuple(ix[name] for ix in indexes))
        return
    for name in _check_pairing(report, folders, indexes, listed, bool(lists)):
        check_pair(tuple(ix[name] for ix in indexes))


def _check_reader(report: Report, root: Path, layout: Layout, check_pair: Callable, splits: list[str]) -> None:
    """Every sample of ``splits`` of a layout whose reader finds the files (OSCD): the reader's own
    errors (a city without its band files) are reported, and every complete sample is read."""
    for split in splits:
        try:
            found = locate(root, layout.kind, split, layout=layout, skip_incomplete=False)
        except DatasetError as err:
            report.add("error", root, str(err).removeprefix(f"{root}: "), "missing-pair")
            found = locate(root, layout.kind, split, layout=layout, skip_incomplete=True)
        for paths in found.paths:
            check_pair(paths)


def _find_layout(report: Report, root: Path, kind: str, layout: Layout | None) -> tuple[Layout, Path] | None:
    """The layout to check and its base folder, or None after reporting why there is none."""
    found = find_layout(root, kind, layout)
    if found is not None:
        return found
    if layout is not None:
        missing, where = missing_folders(root, layout)
        report.add("error", root, f"no folder {', '.join(missing)} in {where}: the {layout.name} layout reads "
                   f"{layout.describe()}; fix data.layout.* or the folder names", "layout")
    elif kind == "change":
        report.add("error", root, "expected A/, B/, label/ folders, or <split>/A/, B/, label/, or the folders of a "
                   f"known change layout ({expected(layouts_of('change')[1:], root)})", "layout")
    elif kind == "image-mask":
        report.add("error", root, "expected A/ + label/ or image/ + mask/ folders, or those of a known image-mask "
                   f"layout ({expected(layouts_of('image-mask')[2:], root)})", "layout")
    else:
        report.add("error", root, "no dataset layout found; expected A/ + label/ or image/ + mask/ (image-mask), "
                   "or A/ + B/ + label/ with optional list/, or <split>/{A,B,label}/ (change), or the folders of a "
                   "known public dataset (see `densechange check --help`)", "layout")
    return None


def check_dataset(
    root: str | Path,
    kind: str = "auto",
    *,
    ignore_value: int | None = None,
    mask_mode: str = "auto",
    num_classes: int | None = None,
    layout: Layout | str | None = None,
    split: str | None = None,
) -> Report:
    """Read every file of the dataset at ``root`` and report all problems (see the module docstring).

    Args:
        root: dataset folder in one of the layouts of :mod:`densechange.datasets.readers.layouts`.
        kind: ``image-mask``, ``change``, or ``auto`` (change layouts are tried first).
        ignore_value: stored mask/label value of ignored pixels.
        mask_mode: mask convention of image–mask datasets (``auto``: the layout's).
        num_classes: bound on class ids of image–mask datasets (default: the layout's, if it fixes one).
        layout: a layout or the name of a known one (default: detect it).
        split: check this split alone (a split folder, a list file's samples, or a reader's split); None: all.
    """
    root = Path(root)
    if kind not in KINDS:
        raise DatasetError(f"kind={kind!r} is not one of {KINDS}.")
    check_mask_mode(mask_mode)
    if isinstance(layout, str):
        layout = None if layout == "auto" else layout_named(layout, None if kind == "auto" else kind)
    if layout is not None and kind not in ("auto", layout.kind):
        raise DatasetError(f"kind={kind!r} contradicts the {layout.name} layout, a {layout.kind} layout.")
    report = Report(root, kind)
    if not root.is_dir():
        report.add("error", root, "dataset folder not found", "layout")
        return report
    found = _find_layout(report, root, kind, layout)
    if found is None:
        report.kind = kind if kind != "auto" else "unknown"
        return report
    layout, base = found
    report.kind = layout.kind
    for link in folder_links_back(base, layout):
        report.add("warning", link, f"{LINK_BACK} (it leads to {link.resolve()})", "link-back")
    every = split_folders(base, layout)
    chosen = every if split is None else [s for s in every if s == split.lower()]
    units = [] if layout.reader else [(parts_for_split(base, layout, s)[0], {}) for s in chosen]
    flat = holds_folders(base, layout)
    flat_lists = list_files(base, layout) if flat else {}
    if split is not None and not chosen:
        if split not in flat_lists:
            known = sorted(set(every) | set(flat_lists))
            report.add("error", base, f"no split {split!r}: the {layout.name} layout here has the splits "
                       f"{known or ['(none: every sample, set no data.split)']}", "layout")
            return report
        flat_lists = {split: flat_lists[split]}
    if flat and (split is None or flat_lists):
        units.insert(0, (parts_of(base, layout), flat_lists))
    where = base if base == root else f"{base.relative_to(root)}/ of {root}"
    splits = ", ".join(f"{s}{'' if layout.reader else '/'}" for s in split_folders(base, layout))
    lists = ", ".join(str(p.relative_to(base)) for p in list_files(base, layout).values()) if flat else ""
    report.layout = (f"{layout.name} ({layout.describe()}) in {where}"
                     + (f"; split{'s' if layout.reader else ' folders'} {splits}" if splits else "")
                     + (f"; list files {lists}" if lists else ""))
    if layout.kind == "image-mask":
        mode = layout.mask_mode if mask_mode == "auto" else mask_mode
        classes = num_classes if num_classes is not None or mode != layout.mask_mode else layout.num_classes
        check_pair = lambda paths: check_image_mask_pair(report, *paths, mode, ignore_value, classes)  # noqa: E731
    else:
        mode, classes = "auto", None
        if mask_mode != "auto":
            report.add("warning", root, f"data.mask_mode={mask_mode!r} applies to the masks of image-mask datasets; "
                       f"the change labels of the {layout.name} layout are decoded by data.layout.labels="
                       f"{layout.labels!r} (binary: 0/1 or 0/255; threshold: grey >= 128 is change; semantic: not "
                       "white is change)", "option")
        check_pair = lambda paths: check_change_pair(report, paths, layout.labels, ignore_value)  # noqa: E731
    if layout.reader:
        _check_reader(report, base, layout, check_pair, chosen)
    for parts, unit_lists in units:
        _check_unit(report, layout, parts, unit_lists, check_pair, only=split if unit_lists else None)
    if flat and split is None and layout.kind == "change" and not list_files(base, layout):
        report.add("warning", base, f"no list files ({layout.lists}): train, val and test would all use the same "
                   f"{report.samples} pairs, so validation would score training data. Add list/{{train,val,test}}.txt.",
                   "no-lists")
    if layout.kind == "image-mask":
        _mask_summary(report, base, mode, classes)
    if not report.fatal and report.samples == 0:
        report.add("error", root, "no complete sample found (files are matched by name without extension)",
                   "no-samples")
    if len(report.bands) > 1:
        usual = report.bands.most_common(1)[0][0]
        for path, bands in report.band_of.items():
            if bands != usual:
                report.add("error", path, f"{bands} bands where most images have {usual}; a batch needs one count",
                           "band-mismatch")
    return report


def _mask_summary(report: Report, mask_dir: Path, mask_mode: str, num_classes: int | None) -> None:
    """Dataset-wide findings on the masks: mixed conventions under ``auto``, sparse class ids."""
    if len(report.auto_modes) > 1:  # auto decides once per dataset; files that disagree would be read inconsistently
        kinds = "; ".join(f"{mode}: {len(paths)} files, e.g. {paths[0].name}" for mode, paths in sorted(report.auto_modes.items()))
        report.add("error", mask_dir, f"masks use different value conventions ({kinds}). The dataset reads them all "
                   "with one rule, so some would be misread: fix the odd files, or set data.mask_mode and data.ignore_value.",
                   "mixed-mask-modes")
    ids = sorted(c for c in report.class_pixels if c != IGNORE_INDEX)
    if num_classes is None and ids and ids[-1] >= max(8, 2 * len(ids)):
        report.add("warning", mask_dir, f"mask values {ids} are taken as class ids, so there would be {ids[-1] + 1} "
                   f"classes, most of them empty. If {ids[-1]} marks ignored pixels pass data.ignore_value={ids[-1]}; "
                   "if the masks are binary pass data.mask_mode=binary255 or binary01", "sparse-ids")
