"""Finding a layout's files on disk: which layout a folder holds, and the samples of one split.

Every layout (:mod:`densechange.datasets.readers.layouts`) is located the same way, from the most
specific place to the least:

1. ``BASE/<split>/<role folders>``: split folders, matched in any letter case (``Train/`` is
   split ``train``); every complete sample of the folder belongs to the split.
2. ``BASE/<role folders>``: one folder for every split; a split is the names in the layout's list
   file (``BASE/list/<split>.txt``, or ``BASE/<split>.txt`` for OpenEarthMap); without any list
   file every split is every complete sample.

``BASE`` is the dataset folder itself or one of the layout's ``inside`` sub-folders of a download
(``AerialImageDataset/`` for Inria, ``Real/subset/`` for CDD). A grouped layout has its role
folders one level further down (``Train/Urban/images_png/``): every group folder adds its samples,
and a name found in two groups is an error naming both files.

A layout may instead name the split inside its folder paths (WHU-CD's
``2012/whole_image/{split}/image``): the splits are the values of ``{split}`` for which every role
folder exists. Samples are matched across role folders by file stem, as everywhere in the toolkit,
except in a scene layout, whose folders hold one raster each (``before.tif``, ``after.tif``,
``change_label.tif``), paired whatever their names. A layout with a ``reader`` (OSCD, whose dates
are folders of band files) has its samples found by that module of :data:`READERS`.

Example:
    >>> found = locate("/data/S2Looking", "change", "val")
    >>> found.layout.name, found.where, len(found.names)
    ('s2looking', 'split folder val/', 1000)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.files import incomplete_samples, index_folder, links_back, read_list, sub_folders
from densechange.datasets.io.sources import confine_to
from densechange.datasets.readers import oscd
from densechange.datasets.readers.layouts import Layout, layouts_of

READERS = {"oscd": oscd}
"""Modules that find a layout's samples themselves: ``matches(base)``, ``splits(base)``, ``samples(base, split, skip,
bands)``."""

__all__ = ["READERS", "Located", "Part", "detect_layout", "find_layout", "locate", "split_folders", "split_dir", "holds_folders", "list_files",
           "parts_of", "expected", "missing_folders", "image_layouts", "locate_images", "parts_for_split", "scene_index",
           "templated", "folder_links_back"]


@dataclass(frozen=True)
class Part:
    """One set of role folders (a split folder, the dataset folder, or a group inside either)."""

    folders: tuple[Path, ...]
    group: str | None = None


@dataclass
class Located:
    """The samples of one split: their names and, per sample, the file of each role folder."""

    layout: Layout
    base: Path
    where: str  # how the split was found, for messages and reports
    names: list[str] = field(default_factory=list)
    paths: list[tuple[Path, ...]] = field(default_factory=list)


def split_dir(folder: Path, name: str) -> Path | None:
    """``folder/name`` in any letter case (exact match first), or None."""
    if (folder / name).is_dir():
        return folder / name
    lowered = name.lower()
    found = [d for d in sorted(folder.iterdir()) if d.is_dir() and d.name.lower() == lowered] if folder.is_dir() else []
    return found[0] if found else None


def _has_folders(folder: Path, layout: Layout) -> bool:
    return all((folder / f).is_dir() for f in layout.folders)


def _groups(folder: Path, layout: Layout) -> list[Path]:
    """Sub-folders of ``folder`` holding at least one role folder (every one of them counts)."""
    return [d for d in sub_folders(folder) if any((d / f).is_dir() for f in layout.folders)]


def templated(layout: Layout) -> bool:
    """Whether the layout names its split inside its folder paths (``2012/whole_image/{split}/image``)."""
    return any("{split}" in f for f in layout.folders)


def holds_folders(folder: Path, layout: Layout) -> bool:
    """Whether ``folder`` holds the role folders itself (or, grouped, in group folders with all of them)."""
    if templated(layout):
        return False
    if layout.groups:
        return any(_has_folders(g, layout) for g in _groups(folder, layout))
    return _has_folders(folder, layout)


def split_folders(base: Path, layout: Layout) -> list[str]:
    """Names (lower case) of the sub-folders of ``base`` that hold the layout's role folders.

    For a layout with ``{split}`` in its folder paths, the values of ``{split}`` for which every role
    folder exists (as they are spelt on disk).
    """
    if not base.is_dir():
        return []
    if layout.reader:
        return READERS[layout.reader].splits(base)
    if templated(layout):
        template = next(f for f in layout.folders if "{split}" in f)
        parent = base / template.split("{split}")[0]
        if not parent.is_dir():
            return []
        return sorted(d.name for d in sub_folders(parent, base)
                      if all((base / f.format(split=d.name)).is_dir() for f in layout.folders))
    return sorted(d.name.lower() for d in sub_folders(base)
                  if holds_folders(d, layout) and not (layout.groups and _has_folders(d, layout)))


LINK_BACK = "a link to a folder inside the dataset or above it; skipped, so that no sample is read twice"


def folder_links_back(base: Path, layout: Layout) -> list[Path]:
    """The links to folders inside ``base`` or above it where splits or groups are looked for: skipped, each
    named once (by ``check`` and as a warning when a dataset is located)."""
    places = [base, *[d for d in sub_folders(base)]] if not templated(layout) else [base]
    return [d for place in places if place.is_dir() for d in sorted(place.iterdir())
            if not d.name.startswith(".") and links_back(d, base)]


def _bases(root: Path, layout: Layout) -> list[Path]:
    return [root] + [root / inside for inside in layout.inside if (root / inside).is_dir()]


def _matches(base: Path, layout: Layout) -> bool:
    if layout.reader:
        return READERS[layout.reader].matches(base)
    return holds_folders(base, layout) or bool(split_folders(base, layout))


def detect_layout(root: Path, kind: str, layouts: Sequence[Layout] | None = None) -> tuple[Layout, Path] | None:
    """The first layout (of ``layouts``, default every known one of ``kind``) found at ``root``, and its base folder."""
    for layout in layouts if layouts is not None else layouts_of(kind):
        for base in _bases(root, layout):
            if _matches(base, layout):
                return layout, base
    return None


def find_layout(root: Path, kind: str = "auto", layout: Layout | None = None) -> tuple[Layout, Path] | None:
    """The layout to read ``root`` with and its base folder: ``layout`` if it is found there, else the first
    known layout of ``kind`` (``auto``: change layouts first, then image-mask ones); None when none is found.

    The VRTs of ``root`` may then reference the files inside it (:func:`~densechange.datasets.io.sources.confine_to`).
    """
    if root.is_dir():
        confine_to(root)
    kinds = ["change", "image-mask"] if kind == "auto" else [kind]
    candidates = [layout] if layout is not None else [lay for k in kinds for lay in layouts_of(k)]
    return detect_layout(root, kinds[0], candidates)


def image_layouts(root: Path, kind: str, layout: Layout | None = None) -> list[Layout]:
    """The layouts to read only the images of ``root`` with: its image folders (both dates, or the image).

    A layout found with its label folder wins: reduced to their image folders, layouts lose what
    tells them apart (Inria's ``images/`` is also OpenEarthMap's). Without labels, every layout of
    ``kind`` reduced to its image folders is tried, in the table's order.
    """
    keep = 2 if kind == "change" else 1
    if layout is not None:
        return [layout if layout.reader else replace(layout, folders=layout.folders[:keep])]
    found = detect_layout(root, kind) if root.is_dir() else None
    candidates = [found[0]] if found is not None else [lay for lay in layouts_of(kind) if not lay.reader]
    return [lay if lay.reader else replace(lay, folders=lay.folders[:keep]) for lay in candidates]


def locate_images(root: str | Path, kind: str, split: str | None, layout: Layout | None = None) -> Located:
    """The samples of ``split`` found by their images alone (labels need not exist), as :func:`locate` finds them.

    ``kind`` ``auto`` tries the change layouts, then the image-mask ones. Samples that lack an
    image are skipped; a reader's samples (OSCD) carry their label paths too.
    """
    root = Path(root)
    kinds = [layout.kind] if layout is not None else ["change", "image-mask"] if kind == "auto" else [kind]
    for k in kinds[:-1]:
        candidates = image_layouts(root, k, layout)
        if root.is_dir() and detect_layout(root, k, candidates) is not None:
            return locate(root, k, split, layout=candidates, skip_incomplete=True)
    return locate(root, kinds[-1], split, layout=image_layouts(root, kinds[-1], layout), skip_incomplete=True)


def expected(layouts: Sequence[Layout], root: Path) -> str:
    """``ROOT/A/ + ROOT/label/ or ...`` for error messages."""
    return " or ".join(" + ".join(f"{root}/{f}/" for f in layout.folders) for layout in layouts)


def list_files(base: Path, layout: Layout) -> dict[str, Path]:
    """The layout's split list files found under ``base``, by split name."""
    pattern = layout.lists
    head, _, tail = pattern.partition("{split}")
    folder = (base / head).parent if head and not head.endswith("/") else base / head
    prefix = Path(head).name if head and not head.endswith("/") else ""
    if not folder.is_dir():
        return {}
    found = {}
    known = set(layout.list_splits)
    for path in sorted(folder.iterdir()):
        name = path.name
        if path.is_file() and name.startswith(prefix) and name.endswith(tail) and len(name) > len(prefix) + len(tail):
            split = name[len(prefix): len(name) - len(tail)]
            if not known or split in known:
                found[split] = path
    return found


def parts_for_split(base: Path, layout: Layout, split: str) -> tuple[list[Part], str] | None:
    """The role folders of split ``split`` (a ``<split>/`` folder, or ``{split}`` in the folder paths), and
    how they were found; None when the layout has no such split."""
    if templated(layout):
        if split not in split_folders(base, layout):
            return None
        return [Part(tuple(base / f.format(split=split) for f in layout.folders), split)], f"{split} folders"
    folder = split_dir(base, split)
    if folder is None or not holds_folders(folder, layout) or folder.name.lower() not in split_folders(base, layout):
        return None
    return parts_of(folder, layout), f"split folder {folder.name}/"


def scene_index(found: dict[str, Path], folder: Path, name: str) -> dict[str, Path]:
    """A scene layout's folder (one raster, named for its role: ``before.tif``) as the index ``{name: raster}``."""
    if len(found) > 1:
        raise DatasetError(f"{folder}: holds {len(found)} rasters ({format_names(sorted(p.name for p in found.values()))}) "
                           "where the layout reads one scene per folder. Keep one raster (its sidecars may stay), or "
                           "describe the tree with data.layout.*.")
    return {name: path for path in found.values()}


def parts_of(folder: Path, layout: Layout) -> list[Part]:
    """The role-folder sets under ``folder``: itself, or its group folders for a grouped layout."""
    if not layout.groups:
        return [Part(tuple(folder / f for f in layout.folders))]
    return [Part(tuple(g / f for f in layout.folders), g.name) for g in _groups(folder, layout)]


def _index(parts: list[Part], layout: Layout) -> list[dict[str, Path]]:
    """One index per role over every part (a name in two groups is an error naming both files).

    A scene layout pairs the one raster of each role folder whatever its name; the sample is named
    after the split (``train``), or ``scene`` when there are no splits.
    """
    indexes: list[dict[str, Path]] = [{} for _ in parts[0].folders] if parts else []
    for part in parts:
        for role, folder in enumerate(part.folders):
            found = index_folder(folder) if folder.is_dir() else {}
            if layout.scene:
                found = scene_index(found, folder, part.group or "scene")
            for name, path in found.items():
                if name in indexes[role]:
                    raise DatasetError(f"{indexes[role][name]} and {path} share the sample name {name!r}; names must "
                                       "be unique across the group folders of a split.")
                indexes[role][name] = path
    return indexes


def _from_list(list_file: Path, indexes: list[dict[str, Path]], skip_incomplete: bool) -> list[str]:
    names = read_list(list_file)
    missing = [n for n in names if not all(n in ix for ix in indexes)]
    if missing and not skip_incomplete:
        raise DatasetError(f"{list_file}: {len(missing)} listed samples have missing files: {format_names(missing)}. "
                           "Remove them from the list or add the files (run `densechange check ROOT`), or set "
                           "data.skip_incomplete=true to skip them.")
    if missing:
        warnings.warn(f"{list_file}: skipping {len(missing)} listed samples that lack a file "
                      f"(data.skip_incomplete=true): {format_names(missing)}", stacklevel=4)
    return [n for n in names if n not in set(missing)]


def _complete(where: Path, indexes: list[dict[str, Path]], folders: list[Path], skip_incomplete: bool) -> list[str]:
    incomplete = incomplete_samples(folders, indexes)
    if incomplete and not skip_incomplete:
        raise DatasetError(f"{where}: {len(incomplete)} samples lack a partner file: {format_names(incomplete)}. "
                           "Add the missing files or remove these, or set data.skip_incomplete=true to train on "
                           "the complete samples only (run `densechange check ROOT` for the full list).")
    if incomplete:
        warnings.warn(f"{where}: skipping {len(incomplete)} samples that lack a partner file "
                      f"(data.skip_incomplete=true): {format_names(incomplete)}", stacklevel=4)
    return sorted(set.intersection(*(set(ix) for ix in indexes)))


def missing_folders(root: Path, layout: Layout) -> tuple[list[str], str]:
    """The role folders of ``layout`` missing where the dataset is closest to it, and where that is.

    ``(["later/ (data.layout.b)"], "train/, val/, test/ of ROOT")``: the dataset folder and its
    sub-folders that hold some of the role folders are compared, and the most complete one wins.
    """
    keys = ("a", "b", "label") if layout.kind == "change" else ("image", "mask")
    if templated(layout):
        names = {d.name for f in layout.folders if "{split}" in f and (root / f.split("{split}")[0]).is_dir()
                 for d in (root / f.split("{split}")[0]).iterdir() if d.is_dir()}
        lacking_roles = [f"{f}/ (data.layout.{k})" for f, k in zip(layout.folders, keys)
                         if not any((root / f.format(split=n)).is_dir() for n in names or {"{split}"})]
        return lacking_roles or [layout.describe()], f"{root} (for any {{split}} of {sorted(names)})"
    places = [root] + [d for d in sorted(root.iterdir()) if d.is_dir() and any((d / f).is_dir() for f in layout.folders)]
    lacking = {place: [(f, k) for f, k in zip(layout.folders, keys) if not (place / f).is_dir()] for place in places}
    fewest = min(len(v) for v in lacking.values())
    closest = [place for place in places if len(lacking[place]) == fewest]
    missing = [f"{f}/ (data.layout.{k})" for f, k in lacking[closest[0]]]
    where = str(root) if closest == [root] else ", ".join(f"{p.name}/" for p in closest) + f" of {root}"
    return missing, where


def _no_layout(root: Path, kind: str, layouts: Sequence[Layout]) -> DatasetError:
    if len(layouts) == 1 and layouts[0].name == "custom":
        missing, where = missing_folders(root, layouts[0])
        return DatasetError(f"{root}: no folder {', '.join(missing)} in {where}; the layout described by data.layout "
                            f"reads {layouts[0].describe()}. Fix the folder names in data.layout.* or point data.root at "
                            "the folder that holds them.")
    kind_name = "change-detection" if kind == "change" else "image-mask"
    return DatasetError(f"{root}: no {kind_name} layout found; expected {expected(layouts, root)} (each with optional "
                        f"list/<split>.txt, or inside <split>/ folders). For another tree set data.layout.* "
                        "(see docs/datasets.md) or run `densechange check` on it.")


def locate(root: str | Path, kind: str, split: str | None, *, layout: Layout | Sequence[Layout] | None = None,
           skip_incomplete: bool = False, bands: Sequence[str] | None = None) -> Located:
    """The samples of ``split`` (None: every sample of a folder without split folders) at ``root``.

    Args:
        layout: the layout to read, or the layouts to detect from (default: the known layouts of ``kind``).
        skip_incomplete: skip samples that lack a role's file with a warning instead of an error.
        bands: band names to read, in order (a reader's layout with named band files: OSCD); None: all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found. Pass the folder that holds the dataset "
                           f"(e.g. {expected(layouts_of(kind)[:2], root)}).")
    confine_to(root)  # the dataset's VRTs may reference the files inside it, and only those
    candidates = layouts_of(kind) if layout is None else [layout] if isinstance(layout, Layout) else list(layout)
    found = detect_layout(root, kind, candidates)
    if found is None:
        raise _no_layout(root, kind, candidates)
    layout, base = found
    for link in folder_links_back(base, layout):
        warnings.warn(f"{link}: {LINK_BACK}", stacklevel=2)
    if bands is not None and not layout.reader:
        raise DatasetError(f"{base}: data.bands picks bands by name, which only a layout of named band files (oscd) "
                           f"has; the {layout.name} layout reads each image's bands as stored. Remove data.bands.")
    if layout.reader:
        if split is None:
            raise DatasetError(f"{base}: the {layout.name} layout is split into {split_folders(base, layout)}; pick one "
                               "with data.split.")
        names, paths = READERS[layout.reader].samples(base, split, skip_incomplete, bands)
        return Located(layout, base, f"{split} list", names, paths)
    splits = split_folders(base, layout)
    folder = split_dir(base, split) if split is not None else None
    in_split = parts_for_split(base, layout, split) if split is not None else None
    if in_split is not None:
        (parts, where), lists = in_split, {}
    elif holds_folders(base, layout):
        parts, lists = parts_of(base, layout), list_files(base, layout)
        where = f"{lists[split].relative_to(base)}" if split in lists else "every sample (no list file)"
        if split is not None and lists and split not in lists:
            missing = (base / layout.lists.format(split=split))
            raise DatasetError(f"{missing}: no list file for split {split!r}; {base} has list files for "
                               f"{sorted(lists)}. Pick one of those, or add the file.")
    elif split is None:
        raise DatasetError(f"{base}: the {layout.name} layout is split into {splits}; pick one with data.split.")
    elif folder is not None and not templated(layout):
        holders = _groups(folder, layout) if layout.groups else [folder]
        missing = sorted({f"{f}/" for g in holders or [folder] for f in layout.folders if not (g / f).is_dir()})
        raise DatasetError(f"{folder}: the split folder has no {', '.join(missing)} (the {layout.name} layout reads "
                           f"{layout.describe()}; some datasets publish no labels for their test split). Complete "
                           f"splits: {splits}.")
    else:
        raise DatasetError(f"{base}: no {split}/ folder with {layout.describe()}; found splits {splits}. "
                           "Pick one of those.")
    if not parts:
        raise DatasetError(f"{base}: no group folder holds {layout.describe()}.")
    indexes = _index(parts, layout)
    if split is not None and split in lists:
        names = _from_list(lists[split], indexes, skip_incomplete)
    else:
        container = parts[0].folders[0].parent.parent if layout.groups else base if templated(layout) \
            else parts[0].folders[0].parent
        names = _complete(container, indexes, [Path(f) for f in layout.folders], skip_incomplete)
    return Located(layout, base, where, names, [tuple(ix[n] for ix in indexes) for n in names])
