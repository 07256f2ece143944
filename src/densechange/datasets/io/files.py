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

__all__ = ["scan_folder", "index_folder", "ignored_files", "read_list", "list_splits", "incomplete_samples"]


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
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and not is_sidecar(p) and not _is_image(p)]


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
