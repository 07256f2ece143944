"""Whole scenes, streamed: two rasters in, a tiled GeoTIFF (or COG, or PNG) change map out, in flat memory.

A scene is predicted block by block, and every window runs once. A block is a group of windows
(rows of windows by their start, the columns they touch): it reads both dates under its windows
(only the file blocks under them are decoded), adds their weighted outputs to the sums of its
pixels (:func:`densechange.finetune.inference.windows.accumulate`) and writes its part of every
output. Windows shared with the next block to the right are kept, not run again. Rows below a
block row that its windows reach into (the overlap) are not written yet: their partial sums, a
strip of the overlap's height across the scene, start the next block row's sums. Each pixel thus
sums its windows in row-major order, as the whole image predicted at once does. No step holds a
full-scene array: peak memory is the block's and that strip's (64 rows x width x 16 bytes: 51 MB
for a 50,000 px wide scene at overlap 64), so 100,000² works like 2,000².

Two dates on different grids: when both are georeferenced and differ in CRS, resolution or extent,
B is resampled bilinearly onto A's grid on the fly (a GDAL warped virtual dataset, no copy). The
outputs cover A's grid; pixels outside B's footprint, or no-data in either date, are no-data.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from tqdm import tqdm

from densechange.atomic import atomic_path, output_error, scratch_path
from densechange.datasets import DatasetError
from densechange.datasets.io.images import to_float_batch
from densechange.datasets.io.raster import (Georef, WindowRequest, describe, footprints_meet, forward_rows, georef_of,
                                            marks_invalid, open_raster, read_window)

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.windows import Sums, WindowGrid, WindowOutputs, accumulate

# A block spans about BLOCK_SIDE pixels each way in whole windows (5 x 5 windows at window 256,
# overlap 64; 2 x 2 at 512; one at 1024): a 2048² scene already holds whole interior blocks, so
# the peak memory is the same for 2048² and 50,000², whatever the window.
BLOCK_SIDE = 1024


def block_windows(stride: int) -> int:
    """Window rows (and columns) per block for windows ``stride`` apart."""
    return max(1, BLOCK_SIDE // stride)


TILE = 256
GDAL_CACHE_BASE_MB = 32  # GDAL's block cache: this much for reading, plus two rows of output tiles per output


def gdal_cache_mb(width: int, outputs: int) -> int:
    """GDAL block cache for a scene ``width`` wide with ``outputs`` rasters written.

    The output tiles that straddle a block row's lower edge stay partly written until the next
    block row: two rows of tiles per output keep them in memory (written once, never flushed half
    done). Reading needs little: each block decodes its file blocks once. GDAL's default, a share of
    the RAM, would instead fill with decoded source blocks in proportion to the scene.
    """
    return GDAL_CACHE_BASE_MB + -(-outputs * 2 * TILE * width // 2**20)
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


class PairSource:
    """Both dates of a scene, read region by region on A's grid (B warped onto it when the grids differ).

    PNG and JPEG dates, which GDAL can only decode from the top, are read forward in strips
    (:class:`~densechange.datasets.io.raster.ForwardRows`), so each row is decoded once.

    Use as a context manager. ``note`` says what was done to B, if anything.
    """

    def __init__(self, path_a: Path, path_b: Path) -> None:
        self.path_a, self.path_b = Path(path_a), Path(path_b)
        self.note: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "PairSource":
        try:
            self.a = forward_rows(self._stack.enter_context(open_raster(self.path_a)))
            b = self._stack.enter_context(open_raster(self.path_b))
            self.georef = georef_of(self.a)
            self.b, self.b_alpha = self._on_grid_of_a(b)
            if self.a.count != b.count:
                raise DatasetError(f"{self.path_a} has {self.a.count} bands but {self.path_b} has {b.count}: both dates "
                                   "must have the same bands.")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    @property
    def height(self) -> int:
        return self.a.height

    @property
    def width(self) -> int:
        return self.a.width

    @property
    def bands(self) -> int:
        return self.a.count

    @property
    def may_lack_data(self) -> bool:
        """Whether some pixels can be no-data (a no-data value or mask in a date, or a warped B)."""
        return self.b_alpha is not None or marks_invalid(self.a) or marks_invalid(self.b)

    def _on_grid_of_a(self, b: Any) -> tuple[Any, int | None]:
        a, ga, gb = self.a, georef_of(self.a), georef_of(b)
        if ga.same_grid(gb, a.height, a.width, b.height, b.width):
            return forward_rows(b), None
        if not (ga.georeferenced and gb.georeferenced):
            raise DatasetError(
                f"{self.path_a} is {a.height}x{a.width} but {self.path_b} is {b.height}x{b.width}, and "
                f"{'neither is' if not (ga.georeferenced or gb.georeferenced) else 'only one is'} georeferenced, so B "
                "cannot be placed on A's grid: both dates must cover the same pixel grid. Co-register and crop them "
                "to a common extent, or give both a CRS and transform.")
        if not footprints_meet(describe(a, self.path_a), describe(b, self.path_b)):
            raise DatasetError(f"{self.path_a} and {self.path_b} do not overlap: their footprints do not intersect "
                               f"(A spans {tuple(a.bounds)} in {a.crs.to_string()}, B spans {tuple(b.bounds)} in "
                               f"{b.crs.to_string()}).")
        vrt = self._stack.enter_context(WarpedVRT(
            b, crs=a.crs, transform=a.transform, width=a.width, height=a.height, resampling=Resampling.bilinear,
            add_alpha=b.nodata is None, nodata=b.nodata))
        self.note = (f"note: {self.path_b.name} ({b.crs.to_string()}, {abs(b.transform.a):.4g} x {abs(b.transform.e):.4g} "
                     f"per pixel) is resampled bilinearly onto the grid of {self.path_a.name} ({a.crs.to_string()}, "
                     f"{abs(a.transform.a):.4g} x {abs(a.transform.e):.4g}); the outputs cover {self.path_a.name}'s grid "
                     "with no-data outside the intersection of the two footprints.")
        return vrt, (b.count + 1 if b.nodata is None else None)

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Both dates over a region (past the scene: the last row and column repeated) and where both hold data.

        The validity is None when neither date can lack data (then padding past the scene is not marked either).
        """
        edge = WindowRequest(top, left, height, width, pad="edge")
        if not self.may_lack_data:
            a = read_window(self.a, edge, path=self.path_a)[0]
            return a, read_window(self.b, edge, path=self.path_b)[0], None
        a, valid_a = read_window(self.a, edge, path=self.path_a)
        bands = list(range(1, self.b.count + 1)) if self.b_alpha is None else list(range(1, self.b_alpha))
        b, valid_b = read_window(self.b, replace(edge, bands=bands), path=self.path_b)
        if self.b_alpha is not None:
            alpha = read_window(self.b, WindowRequest(top, left, height, width, bands=(self.b_alpha,), fill=0))[0]
            valid_b = alpha[..., 0] > 0 if valid_b is None else valid_b & (alpha[..., 0] > 0)
        if valid_a is None or valid_b is None:
            return a, b, valid_b if valid_a is None else valid_a
        return a, b, valid_a & valid_b


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
                options = (dict(driver="COG", compress="DEFLATE", predictor="2", overview_resampling="NEAREST",
                                BIGTIFF="IF_SAFER") if self.cog else dict(driver="PNG"))
                with _quiet():
                    rasterio.shutil.copy(self.stream, self.final, **options)
                sidecar = Path(f"{self.final}{PNG_SIDECAR}")
                if sidecar.exists():  # it appears beside the output together with the output
                    sidecar.replace(self.files.enter_context(atomic_path(Path(f"{self.path}{PNG_SIDECAR}"))))

    def _close_quietly(self) -> None:
        """Close the dataset if an error left it open (its own errors no longer matter then)."""
        if not self.dst.closed:
            with contextlib.suppress(Exception):
                self.dst.close()


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


def predict_scene(predictor: Predictor, path_a: Path, path_b: Path, outputs: SceneOutputs, *,
                  block_rows: int | None = None, block_cols: int | None = None, progress: bool = True
                  ) -> dict[str, float]:
    """Predict a scene pair block by block into ``outputs``; returns the changed fraction and the speed.

    Args:
        predictor: the change model with its window settings.
        block_rows, block_cols: block size in windows (default: :func:`block_windows`); memory grows
            with their product, not with the scene.
    """
    if outputs.distance is not None and not predictor.has_distance:
        raise DatasetError(f"distance={outputs.distance}: the model was trained without the metric branch "
                           "(model.metric_branch=false) and has no distance map.")
    # GDAL's block cache defaults to a share of the RAM and would grow with the scene: size it to what
    # the blocks need instead (gdal_cache_mb).
    with PairSource(path_a, path_b) as probe:
        width = probe.width
    outputs_written = 1 + (outputs.distance is not None) + (outputs.probability is not None)
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(width, outputs_written)), PairSource(path_a, path_b) as pair:
        if pair.bands != predictor.in_chans:
            raise DatasetError(f"{path_a} has {pair.bands} bands but the model was trained on {predictor.in_chans}.")
        if pair.note:
            print(pair.note, file=sys.stderr)
        grid = WindowGrid.for_scene(pair.height, pair.width, window=predictor.window, overlap=predictor.overlap,
                                    margin=predictor.margin, align=predictor.stride)
        masked = pair.may_lack_data
        nodata = change_nodata(pair.georef)
        with contextlib.ExitStack() as files:  # every output appears at its exit, or none
            writers = {"change": SceneWriter(outputs.change, pair.height, pair.width, pair.georef,
                                             nodata if masked else None, outputs.cog, files)}
            for key in ("distance", "probability"):
                path = getattr(outputs, key)
                if path is not None:
                    writers[key] = SceneWriter(path, pair.height, pair.width, pair.georef,
                                               FLOAT_NODATA if masked else None, outputs.cog, files)
            stats = _stream(predictor, pair, grid, writers, nodata, block_rows, block_cols, progress)
            for writer in writers.values():
                writer.finish()
    return stats


Block = tuple[int, int, int, int]


@dataclass(frozen=True)
class BlockRow:
    """Window rows ``ys`` of one block row; it finishes rows ``[top, bottom)``, its windows reach ``reach``."""

    ys: tuple[int, ...]
    top: int
    bottom: int
    reach: int


def block_rows_of(grid: WindowGrid, rows_per_block: int) -> list[BlockRow]:
    """The scene's block rows: ``rows_per_block`` window rows each, cut at a window row's start.

    Rows above a window row's start get nothing from that window, so cutting there leaves only
    the windows above the cut reaching below it (their partial sums are carried down).
    """
    ys, rows = grid.ys, []
    for i0 in range(0, len(ys), rows_per_block):
        i1 = min(i0 + rows_per_block, len(ys))
        top = 0 if i0 == 0 else ys[i0]
        bottom = grid.height if i1 == len(ys) else min(ys[i1], grid.height)
        if top >= grid.height:
            break
        reach = min(grid.height, max(y + grid.win_h for y in ys[i0:i1]))
        rows.append(BlockRow(ys[i0:i1], top, max(bottom, top), max(reach, bottom)))
    return rows


def column_cuts(grid: WindowGrid, cols_per_block: int) -> list[int]:
    """Block boundaries across the scene: one window straddles each, and is kept for the block to its right."""
    return grid.cuts(grid.xs, grid.win_w, grid.width, cols_per_block)


def block_starts(grid: WindowGrid, row: BlockRow, c0: int, c1: int) -> list[tuple[int, int]]:
    """The windows of a block, row-major: its window rows, the columns that touch ``[c0, c1)``."""
    return [(y, x) for y in row.ys for x in grid.xs if x < c1 and x + grid.win_w > c0]


def windows_to_run(grid: WindowGrid, rows_per_block: int, cols_per_block: int) -> int:
    """Windows the block loop runs: each block's, less those kept from the block to its left (each window once)."""
    cuts, total = column_cuts(grid, cols_per_block), 0
    for row in block_rows_of(grid, rows_per_block):
        kept: set[tuple[int, int]] = set()
        for c0, c1 in zip(cuts, cuts[1:]):
            starts = block_starts(grid, row, c0, c1)
            total += sum(s not in kept for s in starts)
            kept = {s for s in starts if s[1] + grid.win_w > c1}
    return total


def iter_blocks(predictor: Predictor, pair: PairSource, grid: WindowGrid, rows_per_block: int, cols_per_block: int,
                on_window: Callable[[], None] | None = None
                ) -> Iterator[tuple[Block, dict[str, torch.Tensor | None], np.ndarray | None]]:
    """Each block's finished region ``(r0, r1, c0, c1)``, its blended float outputs and where both dates hold data.

    Blocks come row by row. The next block is read and decoded on a second thread while the
    network runs on this one (GDAL releases the interpreter while it decodes), so the network does
    not wait for the disk; only that thread touches the source rasters.
    """
    cuts = column_cuts(grid, cols_per_block)
    plan = [(row, c0, c1, block_starts(grid, row, c0, c1))
            for row in block_rows_of(grid, rows_per_block) for c0, c1 in zip(cuts, cuts[1:])]

    def load(starts: list[tuple[int, int]]) -> tuple[int, int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        top, left = starts[0][0], min(x for _, x in starts)
        bottom, right = starts[-1][0] + grid.win_h, max(x for _, x in starts) + grid.win_w
        return top, left, pair.read(top, left, bottom - top, right - left)

    carried: Sums | None = None  # partial sums of the rows the block row above reached into, scene-wide
    below: Sums | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="densechange-read") as reader:
        pending = reader.submit(load, plan[0][3])
        known: WindowOutputs = {}
        for i, (row, c0, c1, starts) in enumerate(plan):
            ty0, tx0, (a_raw, b_raw, valid) = pending.result()
            if i + 1 < len(plan):
                pending = reader.submit(load, plan[i + 1][3])
            if c0 == 0:
                known, carried, below = {}, below, None

            def read(batch: list[tuple[int, int]], a_raw: np.ndarray = a_raw, b_raw: np.ndarray = b_raw,
                     ty0: int = ty0, tx0: int = tx0) -> tuple[torch.Tensor, torch.Tensor]:
                cut = [(slice(y - ty0, y - ty0 + grid.win_h), slice(x - tx0, x - tx0 + grid.win_w)) for y, x in batch]
                return to_float_batch(np.stack([a_raw[r, c] for r, c in cut])), \
                    to_float_batch(np.stack([b_raw[r, c] for r, c in cut]))

            initial = carried.columns(c0, c1) if carried is not None else None
            reach = max(row.reach, row.top + (carried.weight.shape[0] if carried is not None else 0))
            sums, known = accumulate(predictor.forward_windows, grid, (row.top, reach, c0, c1), read, starts=starts,
                                     batch_size=predictor.batch_size, device=predictor.device, known=known,
                                     keep=lambda y, x, c1=c1: x + grid.win_w > c1, on_window=on_window, initial=initial)
            height = row.bottom - row.top
            if reach > row.bottom:
                if below is None:
                    below = Sums.zeros(sums, reach - row.bottom, grid.width)
                below.columns(c0, c1).copy_from(sums.rows(height, reach - row.top))
            result = sums.rows(0, height).blended()
            yield (row.top, row.bottom, c0, c1), result, \
                valid[row.top - ty0 : row.bottom - ty0, c0 - tx0 : c1 - tx0] if valid is not None else None


def _stream(predictor: Predictor, pair: PairSource, grid: WindowGrid, writers: dict[str, SceneWriter], nodata: int,
            block_rows: int | None, block_cols: int | None, progress: bool) -> dict[str, float]:
    """Encode and write every block; count the changed pixels; show windows and megapixels per second."""
    rows = block_rows or block_windows(grid.stride)
    cols = block_cols or block_windows(grid.stride)
    bar = tqdm(total=windows_to_run(grid, rows, cols), unit="window", desc="predict", disable=not progress,
               dynamic_ncols=True)
    start, changed, valid_pixels, done_pixels = time.perf_counter(), 0, 0, 0
    try:
        for (r0, r1, c0, c1), result, valid in iter_blocks(predictor, pair, grid, rows, cols, bar.update):
            encoded = encode(result, valid, nodata, tuple(writers))
            for key, writer in writers.items():
                writer.write(encoded[key], r0, c0)
            changed += int((encoded["change"] == 255).sum())
            valid_pixels += int(valid.sum()) if valid is not None else encoded["change"].size
            done_pixels += encoded["change"].size
            bar.set_postfix(Mpx_s=f"{done_pixels / 1e6 / max(time.perf_counter() - start, 1e-9):.2f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"changed": changed / max(valid_pixels, 1), "valid": valid_pixels / max(done_pixels, 1),
            "seconds": seconds, "megapixels_per_s": done_pixels / 1e6 / max(seconds, 1e-9)}
