"""The pairs that ``densechange predict`` is asked for, as jobs: both dates and where the outputs go.

Three ways to name them, turned into one job list by :func:`list_jobs` (the one place that reads
the ``a``, ``b``, ``pairs`` and ``out`` keys):

- ``a=t1.tif b=t2.tif out=change.tif``: one pair;
- ``a=t1/ b=t2/ out=changes/``: two folders, images matched by name;
- ``pairs=pairs.csv out=changes/``: a list or CSV file, one pair a line, ``a,b`` or ``a,b,out``.
  Relative dates resolve against the file's folder, a relative ``out`` against the ``out=`` folder;
  blank lines and lines starting with ``#`` are skipped, and a first line ``a,b`` or ``a,b,out`` is
  a header.

A date may be a URL or a STAC item (:mod:`densechange.datasets.io.inputs`), in ``a=``/``b=`` and in a
pairs file alike. Outputs without a name of their own take the first date's name, ``.tif`` for TIFF
inputs (or with ``cog=true``), else ``.png``.
"""
from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

from omegaconf import DictConfig, OmegaConf

from densechange.datasets import DatasetError, list_pairs
from densechange.datasets.io.inputs import input_reading, is_remote_input, scene_input
from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.remote import RasterRef, reading

from densechange.finetune.inference.streaming import SceneOutputs

TIFF = (".tif", ".tiff")
OUTPUT_SUFFIXES = (".png", *TIFF)
HEADERS = (["a", "b"], ["a", "b", "out"])


@dataclass(frozen=True)
class Job:
    """One pair to predict: both dates and where its outputs go."""

    a: Path | RasterRef
    b: Path | RasterRef
    outputs: SceneOutputs

    def reading(self, cfg: DictConfig) -> ContextManager[None]:
        """GDAL's network options while a date of this job is a URL or a STAC item; local scenes keep GDAL's defaults."""
        remote = any(isinstance(date, RasterRef) for date in (self.a, self.b))
        return reading(OmegaConf.to_object(cfg.remote)) if remote else contextlib.nullcontext()


def listing(cfg: DictConfig) -> ContextManager[None]:
    """GDAL's network options while the jobs are listed, when ``a``/``b`` or ``bands`` name remote inputs."""
    return input_reading(cfg.a or "", cfg.b or "", cfg.bands, OmegaConf.to_object(cfg.remote))


def _opener(cfg: DictConfig) -> Callable[[str, Path], Path | RasterRef]:
    """``(text, folder) -> date``: a URL or STAC item as its raster, else a local path relative to ``folder``."""
    settings = OmegaConf.to_object(cfg.remote)

    def open_date(text: str, folder: Path) -> Path | RasterRef:
        return scene_input(text, cfg.bands, settings) if is_remote_input(text, cfg.bands) else folder / text

    return open_date


def checked_output(path: Path, where: str = "") -> Path:
    """``path`` if it names a format the change maps are written in; ``where`` prefixes the error."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DatasetError(f"{where}{path}: write change maps as .png, .tif or .tiff.")
    return path


def beside(out: Path, kind: str) -> Path:
    """The file of another output beside the change map ``out`` (``change_probability.tif``)."""
    return out.with_name(f"{out.stem}_{kind}{out.suffix}")


def output_folder(cfg: DictConfig) -> Path:
    """Where the run's own files go (manifest, log, band parts): ``out`` when it is a folder, else its folder."""
    out = Path(cfg.out)
    return out if cfg.pairs or (cfg.a and Path(cfg.a).is_dir()) else out.parent


def scene_size(path: Path | RasterRef) -> tuple[int, int]:
    """``(height, width)`` of a raster, from its header (no pixel is decoded)."""
    with open_raster(path) as src:
        return src.height, src.width


def list_jobs(cfg: DictConfig) -> list[Job]:
    """Every pair the config names, with its outputs, in the order given (folders: sorted by name)."""
    if cfg.pairs and (cfg.a or cfg.b):
        raise DatasetError(f"pairs={cfg.pairs} and a=/b=: name the pairs one way, a list file or the dates.")
    if not cfg.pairs and not (cfg.a and cfg.b):
        raise DatasetError("name the pairs to predict: a=T1 b=T2 (two images or two folders), or pairs=FILE.")
    out = Path(cfg.out)
    dist = Path(cfg.distance) if cfg.distance else None
    beside_out = cfg.probability is True  # true: beside out; a path: there; null or false: none
    prob = Path(cfg.probability) if isinstance(cfg.probability, str) and cfg.probability else None
    if not cfg.pairs and Path(cfg.a).is_dir() != Path(cfg.b).is_dir():
        raise DatasetError(f"a={cfg.a} and b={cfg.b}: pass two image files or two folders, not one of each.")
    if not cfg.pairs and not Path(cfg.a).is_dir():
        a, b = _opener(cfg)(cfg.a, Path()), _opener(cfg)(cfg.b, Path())
        for p in (a, b):
            if isinstance(p, Path) and not p.is_file():
                raise DatasetError(f"{p}: image not found.")
        probability = checked_output(prob) if prob is not None else beside(out, "probability") if beside_out else None
        return [Job(a, b, SceneOutputs(checked_output(out), checked_output(dist) if dist else None, probability,
                                       cfg.cog))]
    if out.suffix.lower() in OUTPUT_SUFFIXES:
        raise DatasetError(f"out={out}: when a and b are folders, or pairs is a file, out is a folder, not an image file.")
    named = read_pairs(Path(cfg.pairs), _opener(cfg)) if cfg.pairs else folder_pairs(Path(cfg.a), Path(cfg.b))
    jobs, seen = [], {}
    for a, b, name, where in named:
        stem, suffix = Path(a.name).stem, Path(a.name).suffix.lower()
        file = Path(name) if name is not None else Path(f"{stem}{'.tif' if suffix in TIFF or cfg.cog else '.png'}")
        checked_output(file, where)
        if file in seen:
            raise DatasetError(f"{where}output {out / file} is also that of {seen[file]}; give each pair its own out.")
        seen[file] = where.rstrip(": ") or f"{a} and {b}"
        probability = (prob or out.with_name(out.name + "_probability")) / file if beside_out or prob else None
        jobs.append(Job(a, b, SceneOutputs(out / file, dist / file if dist else None, probability, cfg.cog)))
    return jobs


def folder_pairs(a: Path, b: Path) -> list[tuple[Path, Path, None, str]]:
    """The pairs of two folders, matched by name."""
    return [(pa, pb, None, "") for pa, pb, _ in list_pairs(a, b)]


def read_pairs(path: Path, open_date: Callable[[str, Path], Path | RasterRef]
               ) -> list[tuple[Path | RasterRef, Path | RasterRef, str | None, str]]:
    """``(a, b, out or None, "FILE, line N: ")`` of each pair of a list or CSV file; bad rows name their line.

    ``open_date(text, folder)`` turns a field into a date (a local path relative to the file's folder,
    or a URL's or STAC item's raster)."""
    if not path.is_file():
        raise DatasetError(f"pairs={path}: list file not found.")
    folder, rows = path.parent, []
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            where = f"{path}, line {number}: "
            fields = [field.strip() for field in row]
            if not fields or not any(fields) or fields[0].startswith("#"):
                continue
            if not rows and fields in HEADERS:
                continue
            if len(fields) not in (2, 3):
                raise DatasetError(f"{where}expected a,b or a,b,out, got {len(fields)} field"
                                   f"{'s' if len(fields) != 1 else ''}: {','.join(fields)[:200]!r}.")
            if not all(fields):
                raise DatasetError(f"{where}an empty field in {','.join(fields)[:200]!r}.")
            a, b = open_date(fields[0], folder), open_date(fields[1], folder)
            for date in (a, b):
                if isinstance(date, Path) and not date.is_file():
                    raise DatasetError(f"{where}image not found: {date}.")
            rows.append((a, b, fields[2] if len(fields) == 3 else None, where))
    if not rows:
        raise DatasetError(f"pairs={path}: no pair listed (one pair a line: a,b or a,b,out).")
    return rows
