"""Finding the files of a dataset: image folders indexed by name, and split list files.

Datasets pair files across folders by file *stem* (``A/tile_3.png`` with ``label/tile_3.tif``), so
that images and masks may use different formats. List files name one sample per line, with or
without extension.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.raster import RASTER_SUFFIXES, is_sidecar, opens_as_raster

__all__ = ["scan_folder", "index_folder", "ignored_files", "skipped_files", "links_back", "sub_folders", "read_list",
           "list_splits", "incomplete_samples"]


def links_back(path: Path, root: Path) -> bool:
    """Whether ``path`` is a symbolic link to a folder inside ``root`` or above it (``ds/loop -> ../ds``).

    Reading through it would read the dataset's files a second time, or loop; such a link is skipped.
    """
    if not path.is_symlink():
        return False
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a broken or looping link leads to no folder
        return False
    root = root.resolve()
    return target.is_dir() and (target.is_relative_to(root) or root.is_relative_to(target))


def sub_folders(folder: Path, root: Path | None = None) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted, without the links back into ``root`` (default: ``folder``)."""
    if not folder.is_dir():
        return []
    root = folder if root is None else root
    return [d for d in sorted(folder.iterdir())
            if not d.name.startswith(".") and d.is_dir() and not links_back(d, root)]


def _is_image(path: Path) -> bool:
    """A raster by its suffix, or any other file that GDAL opens; sidecars (headers, world files) never are."""
    if path.name.startswith(".") or is_sidecar(path) or not path.is_file():
        return False
    return path.suffix.lower() in RASTER_SUFFIXES or opens_as_raster(path)


def scan_folder(folder: Path) -> tuple[dict[str, Path], list[tuple[Path, Path]]]:
    """Image files of ``folder`` by stem, and the pairs of files that share a stem (the first one is kept)."""
    found: dict[str, Path] = {}
    clashes: list[tuple[Path, Path]] = []
    for path in sorted(folder.iterdir()):
        if not _is_image(path):
            continue
        if path.stem in found:
            clashes.append((found[path.stem], path))
        else:
            found[path.stem] = path
    return found, clashes


def index_folder(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two files with one stem are an error (which one is meant?)."""
    found, clashes = scan_folder(folder)
    if clashes:
        first, second = clashes[0]
        raise DatasetError(f"{folder}: both {first.name} and {second.name} are named {first.stem!r}. "
                           "Keep one file per sample name.")
    return found


def ignored_files(folder: Path) -> list[Path]:
    """Visible files of ``folder`` that are neither rasters nor the sidecar files of one."""
    return skipped_files(folder).get("of unsupported formats", [])


def skipped_files(folder: Path) -> dict[str, list[Path]]:
    """The entries of ``folder`` that are not read as samples, by why: hidden files, links that loop or lead
    nowhere, and files of unsupported formats (sidecar files belong to their raster and are not listed)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() and not path.exists():  # exists() follows the link: False when it loops or dangles
            found.setdefault("links that loop or lead nowhere", []).append(path)
        elif not path.is_file() or is_sidecar(path):
            continue
        elif path.name.startswith("."):
            found.setdefault("hidden", []).append(path)
        elif not _is_image(path):
            found.setdefault("of unsupported formats", []).append(path)
    return found


def _stem(name: str) -> str:
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in RASTER_SUFFIXES else name


def read_list(path: Path) -> list[str]:
    """Sample names of a list file: one per line, extension optional, blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the list file ({err}).") from err
    return [_stem(Path(s.strip()).name) for s in lines if s.strip() and not s.lstrip().startswith("#")]


def list_splits(root: Path) -> list[str]:
    """Split names that have a ``root/list/<split>.txt`` file."""
    folder = root / "list"
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def incomplete_samples(folders: Sequence[Path], indexes: list[dict[str, Path]]) -> list[str]:
    """``"A/x.png (no B/, label/)"`` for every sample name that some folders have and others lack."""
    out = []
    for name in sorted(set().union(*indexes) - set.intersection(*(set(ix) for ix in indexes))):
        present = next(ix[name] for ix in indexes if name in ix)
        lacking = ", ".join(f.name + "/" for f, ix in zip(folders, indexes) if name not in ix)
        out.append(f"{present.parent.name}/{present.name} (no {lacking})")
    return out
