"""Whole scenes, streamed: two rasters in, a tiled GeoTIFF (or COG, or PNG) change map out, in flat memory.

A scene is predicted block by block (:class:`~densechange.finetune.inference.scene.Scene`,
:meth:`~densechange.finetune.inference.backend.Predictor.blocks`), every window runs once, and each
block writes its part of every output as soon as it is blended: peak memory is a block's, whatever
the scene's size.

Two dates on different grids: when both are georeferenced and differ in CRS, resolution or extent,
B is resampled bilinearly onto A's grid on the fly (:class:`~densechange.finetune.inference.sources.PairSource`).
The outputs cover A's grid; pixels outside B's footprint, or no-data in either date, are no-data.

Outputs (uint8, A's CRS and transform):

- change map: 0 unchanged, 255 changed; no-data is A's no-data value when it fits (1..254), else 1;
- distance map (optional): ``round(254 * d / 2)``; probability (optional): ``round(254 * p)``; both use 255 for no-data.

Every output is written under a temporary name and renamed when complete
(:mod:`densechange.atomic`), so a killed run never leaves a file that looks finished; a disk that
refuses the data (full, read-only, no permission) stops the run with an ``OutputError`` naming the
output, and no output or temporary file is left.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window
from tqdm import tqdm

from densechange.atomic import atomic_path, output_error, scratch_path
from densechange.datasets import DatasetError
from densechange.datasets.io.raster import Georef
from densechange.datasets.io.remote import RasterRef

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.scene import TILE, BlockResult, open_scene, windows_to_run

PROBABILITY_SCALE = DISTANCE_SCALE = 254
FLOAT_NODATA = 255
PNG_SIDECAR = ".aux.xml"  # where GDAL keeps a PNG's CRS, transform and no-data

try:  # GDAL's own errors (CPLE_*) reach Python unwrapped from some calls, e.g. rasterio.shutil.copy
    from rasterio._err import CPLE_BaseError
except ImportError:  # a rasterio that moved it: its public base class still covers its wrapped errors
    CPLE_BaseError = RasterioError
GDAL_WRITE_ERRORS = (OSError, RasterioError, CPLE_BaseError)


@dataclass
class SceneOutputs:
    """Where a scene's results go; ``distance`` and ``probability`` are optional."""

    change: Path
    distance: Path | None = None
    probability: Path | None = None
    cog: bool = False


def change_nodata(georef: Georef) -> int:
    """The change map's no-data value: A's own when a uint8 can hold it beside 0 and 255, else 1."""
    value = georef.nodata
    if value is not None and float(value).is_integer() and 1 <= value <= 254:
        return int(value)
    return 1


class SceneWriter:
    """One uint8 output raster, written block by block under a temporary name, renamed when complete.

    The files live in ``files`` (an ``ExitStack`` shared by a scene's outputs): when it closes
    normally every output appears under its name; when it closes on an error none does, and no
    temporary file is left. GDAL's write errors (which are not all ``OSError``) become an
    :class:`~densechange.atomic.OutputError` naming the output.
    """

    def __init__(self, path: Path, height: int, width: int, georef: Georef, nodata: int | None, cog: bool,
                 files: contextlib.ExitStack) -> None:
        self.path, self.cog = Path(path), cog
        if self.path.suffix.lower() not in (".tif", ".tiff", ".png"):
            raise DatasetError(f"{self.path}: write change maps as .png, .tif or .tiff.")
        if cog and self.path.suffix.lower() == ".png":
            raise DatasetError(f"{self.path}: cog=true writes a Cloud-Optimised GeoTIFF; name the output .tif.")
        self.files = files
        self.final = files.enter_context(atomic_path(self.path, suffix=self.path.suffix))
        converted = cog or self.path.suffix.lower() == ".png"
        # A COG or PNG cannot be written block by block: stream a tiled GeoTIFF, convert at the end.
        self.stream = files.enter_context(scratch_path(self.path, ".stream.tif")) if converted else self.final
        if self.path.suffix.lower() == ".png":  # GDAL puts its georeferencing in a sidecar of the temporary name
            files.callback(Path(f"{self.final}{PNG_SIDECAR}").unlink, missing_ok=True)
        profile: dict[str, Any] = dict(driver="GTiff", height=height, width=width, count=1, dtype="uint8",
                                       compress="deflate", predictor=2, BIGTIFF="IF_SAFER")
        if height > TILE or width > TILE:
            profile.update(tiled=True, blockxsize=TILE, blockysize=TILE)
        if georef.georeferenced:
            profile.update(crs=georef.crs, transform=georef.affine)
        if nodata is not None:
            profile["nodata"] = nodata
        with self._writing(), _quiet():
            self.dst = rasterio.open(self.stream, "w", **profile)
        files.callback(self._close_quietly)  # runs before the files are removed or renamed

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except GDAL_WRITE_ERRORS as err:
            raise output_error(self.path, err) from err

    def write(self, block: np.ndarray, top: int, left: int) -> None:
        with self._writing():
            self.dst.write(block, 1, window=Window(left, top, block.shape[1], block.shape[0]))

    def finish(self) -> None:
        """Close and convert (COG, PNG) under the temporary name; the final name appears when ``files`` closes."""
        with self._writing():
            self.dst.close()
            if self.stream != self.final:
                _copy(self.stream, self.final, self.path, self.cog, self.files)

    def _close_quietly(self) -> None:
        """Close the dataset if an error left it open (its own errors no longer matter then)."""
        if not self.dst.closed:
            with contextlib.suppress(Exception):
                self.dst.close()


def copy_options(path: Path, cog: bool, height: int, width: int) -> dict[str, Any]:
    """GDAL creation options of an output ``path`` copied whole from another raster: as :class:`SceneWriter` writes."""
    if cog:
        return dict(driver="COG", compress="DEFLATE", predictor="2", overview_resampling="NEAREST", BIGTIFF="IF_SAFER")
    if Path(path).suffix.lower() == ".png":
        return dict(driver="PNG")
    options: dict[str, Any] = dict(driver="GTiff", compress="DEFLATE", predictor="2", BIGTIFF="IF_SAFER")
    if height > TILE or width > TILE:
        options.update(tiled="YES", blockxsize=str(TILE), blockysize=str(TILE))
    return options


def _copy(source: Path, final: Path, path: Path, cog: bool, files: contextlib.ExitStack) -> None:
    """Copy the raster ``source`` to ``final`` (the temporary name of ``path``) in ``path``'s format; a PNG's
    georeferencing sidecar appears beside ``path`` when ``files`` closes, together with it."""
    with rasterio.open(source) as src:
        height, width = src.height, src.width
    with _quiet():
        rasterio.shutil.copy(source, final, **copy_options(path, cog, height, width))
    sidecar = Path(f"{final}{PNG_SIDECAR}")
    if sidecar.exists():
        sidecar.replace(files.enter_context(atomic_path(Path(f"{path}{PNG_SIDECAR}"))))


def publish_copy(source: Path, path: Path, cog: bool) -> None:
    """Write the output ``path`` as a copy of the raster ``source`` (a VRT over parts): in its format, atomically.

    Nothing appears under ``path`` (or its PNG sidecar) before the copy is whole; a write the disk
    refuses is an :class:`~densechange.atomic.OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        with contextlib.ExitStack() as files:
            final = files.enter_context(atomic_path(path, suffix=path.suffix))
            if path.suffix.lower() == ".png":
                files.callback(Path(f"{final}{PNG_SIDECAR}").unlink, missing_ok=True)
            _copy(source, final, path, cog, files)
    except GDAL_WRITE_ERRORS as err:
        raise output_error(path, err) from err


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def changed_class(logits: torch.Tensor) -> torch.Tensor:
    """``(K, H, W)`` logits -> the ``(H, W)`` class index (ties to the lower class, as ``argmax``).

    With two classes a comparison gives the argmax several times faster than ``argmax(0)``, whose
    reduction across a leading axis of 2 is slow on a CPU.
    """
    return (logits[1] > logits[0]).to(torch.uint8) if logits.shape[0] == 2 else logits.argmax(0)


def encode(result: dict[str, torch.Tensor | None], valid: np.ndarray | None, nodata: int,
           keys: tuple[str, ...] = ("change", "probability", "distance")) -> dict[str, np.ndarray]:
    """Blended logits and distances of a block -> the uint8 arrays of the outputs in ``keys``."""
    logits = result["logits"]
    out = {"change": (changed_class(logits).numpy() * 255).astype(np.uint8)}
    if "probability" in keys:
        out["probability"] = (torch.softmax(logits, 0)[1] * PROBABILITY_SCALE).round().to(torch.uint8).numpy()
    if "distance" in keys and result["distance"] is not None:
        out["distance"] = (result["distance"].clamp(0, 2) / 2 * DISTANCE_SCALE).round().to(torch.uint8).numpy()
    if valid is not None:
        out["change"][~valid] = nodata
        for key in ("probability", "distance"):
            if key in out:
                out[key][~valid] = FLOAT_NODATA
    return out


def predict_scene(predictor: Predictor, path_a: Path | RasterRef, path_b: Path | RasterRef, outputs: SceneOutputs, *,
                  blocks: tuple[int, int] | None = None, progress: bool = True, region: Sequence[int] | None = None,
                  band: tuple[int, int] | None = None) -> dict[str, float]:
    """Predict a scene pair block by block into ``outputs``; returns the changed fraction and the speed.

    Args:
        predictor: the change model with its window settings.
        path_a, path_b: local files, or URLs and in-memory rasters (:mod:`densechange.datasets.io.remote`).
        region: ``[top, left, height, width]`` in A's pixels: predict that part only (the outputs cover it).
        blocks: block size in windows, ``(rows, columns)`` (default:
            :func:`~densechange.finetune.inference.scene.block_windows`); memory grows with their
            product, not with the scene.
        band: block rows ``[first, last)`` alone (:meth:`Scene.band
            <densechange.finetune.inference.scene.Scene.band>`): the outputs then hold the band's
            pixel rows, georeferenced where they lie in the scene.
    """
    if outputs.distance is not None and not predictor.has_distance:
        raise DatasetError(f"distance={outputs.distance}: the model was trained without the metric branch "
                           "(model.metric_branch=false) and has no distance map.")
    written = 1 + (outputs.distance is not None) + (outputs.probability is not None)
    block_rows, block_cols = blocks or (None, None)
    with open_scene(path_a, path_b, predictor.windows, predictor.stride, outputs=written, block_rows=block_rows,
                    block_cols=block_cols, region=region) as scene:
        nodata = change_nodata(scene.georef)  # the whole scene's, so that every band agrees
        top, bottom = 0, scene.grid.height
        if band is not None:
            scene = scene.band(*band)
            rows = scene.block_rows[-(band[1] - band[0]):]
            top, bottom = rows[0].top, rows[-1].bottom
        results = predictor.blocks(scene, lambda: bar.update())  # checks the bands now, before the bar and the outputs
        if scene.note:
            print(scene.note, file=sys.stderr)
        grid, georef = scene.grid, scene.georef.for_window(top, 0)
        bar = tqdm(total=windows_to_run(scene.blocks, grid), unit="window", desc="predict", disable=not progress,
                   dynamic_ncols=True)
        with bar, contextlib.ExitStack() as files:  # every output appears at the exit, or none
            writers = {"change": SceneWriter(outputs.change, bottom - top, grid.width, georef,
                                             nodata if scene.masked else None, outputs.cog, files)}
            for key in ("distance", "probability"):
                path = getattr(outputs, key)
                if path is not None:
                    writers[key] = SceneWriter(path, bottom - top, grid.width, georef,
                                               FLOAT_NODATA if scene.masked else None, outputs.cog, files)
            stats = _stream(results, writers, nodata, bar, top)
            for writer in writers.values():
                writer.finish()
    return stats


def _stream(blocks: Iterable[BlockResult], writers: dict[str, SceneWriter], nodata: int, bar: tqdm,
            top: int = 0) -> dict[str, float]:
    """Encode and write every block (the outputs start at scene row ``top``); count the changed pixels; show windows
    and megapixels per second."""
    start, changed, valid_pixels, done_pixels = time.perf_counter(), 0, 0, 0
    for (r0, r1, c0, c1), result, valid in blocks:
        encoded = encode(result, valid, nodata, tuple(writers))
        for key, writer in writers.items():
            writer.write(encoded[key], r0 - top, c0)
        changed += int((encoded["change"] == 255).sum())
        valid_pixels += int(valid.sum()) if valid is not None else encoded["change"].size
        done_pixels += encoded["change"].size
        bar.set_postfix(Mpx_s=f"{done_pixels / 1e6 / max(time.perf_counter() - start, 1e-9):.2f}")
    seconds = time.perf_counter() - start
    return {"changed": changed / max(valid_pixels, 1), "valid": valid_pixels / max(done_pixels, 1),
            "seconds": seconds, "megapixels_per_s": done_pixels / 1e6 / max(seconds, 1e-9)}
