"""One scene: both dates, their window grid, where they hold data, and the blocks they are predicted in.

``densechange predict`` (:mod:`~densechange.finetune.inference.streaming`), scoring (validation and
``densechange evaluate``, :mod:`~densechange.finetune.inference.scoring`) and a pair held in memory
predict a pair the same way: a :class:`Scene`, whose blocks
:meth:`Predictor.blocks <densechange.finetune.inference.backend.Predictor.blocks>` runs the network
over, window batch by window batch, blending the outputs
(:class:`~densechange.finetune.inference.windows.Sums`).

A block is a group of windows (rows of windows by their start, the columns they touch): it reads
both dates under its windows (only the file blocks under them are decoded), adds their weighted
outputs to the sums of its pixels and gives its part of the blended outputs. Windows shared with
the next block to the right are kept, not run again. Rows below a block row that its windows
reach into (the overlap) are not finished yet: their partial sums, a strip of the overlap's height
across the scene, start the next block row's sums. Each pixel thus sums its windows in row-major
order, as the whole image predicted at once does, so a scene predicted block by block equals the
scene predicted whole, up to the rounding of the network's kernels (which may depend on how windows
are batched). No step holds a full-scene array: peak memory is the block's and that strip's (64
rows x width x 16 bytes: 51 MB for a 50,000 px wide scene at overlap 64), so 100,000² works like
2,000². A pair in memory is a scene of one block.
"""
from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import rasterio
import torch

from densechange.datasets.io.images import to_float_batch
from densechange.datasets.io.limits import check_bytes
from densechange.datasets.io.raster import Georef, open_raster
from densechange.datasets.io.remote import RasterRef

from densechange.finetune.inference.sources import PairReader, PairSource, TensorPair
from densechange.finetune.inference.windows import WindowGrid, WindowSettings

# A block spans about BLOCK_SIDE pixels each way in whole windows (5 x 5 windows at window 256,
# overlap 64; 2 x 2 at 512; one at 1024): a 2048² scene already holds whole interior blocks, so
# the peak memory is the same for 2048² and 50,000², whatever the window.
BLOCK_SIDE = 1024
TILE = 256  # side of the output rasters' tiles
GDAL_CACHE_BASE_MB = 32  # GDAL's block cache: this much for reading, plus two rows of output tiles per output


def block_windows(stride: int) -> int:
    """Window rows (and columns) per block for windows ``stride`` apart."""
    return max(1, BLOCK_SIDE // stride)


def gdal_cache_mb(width: int, outputs: int) -> int:
    """GDAL block cache for a scene ``width`` wide with ``outputs`` rasters written.

    The output tiles that straddle a block row's lower edge stay partly written until the next
    block row: two rows of tiles per output keep them in memory (written once, never flushed half
    done). Reading needs little: each block decodes its file blocks once. GDAL's default, a share of
    the RAM, would instead fill with decoded source blocks in proportion to the scene.
    """
    return GDAL_CACHE_BASE_MB + -(-outputs * 2 * TILE * width // 2**20)


@dataclass(frozen=True)
class BlockRow:
    """Window rows ``ys`` of one block row; it finishes rows ``[top, bottom)``, its windows reach ``reach``."""

    ys: tuple[int, ...]
    top: int
    bottom: int
    reach: int


@dataclass(frozen=True)
class Block:
    """The windows of one block, row-major: its row's window rows, the window columns that touch ``[left, right)``."""

    row: BlockRow
    left: int
    right: int
    columns: tuple[int, ...]

    @property
    def starts(self) -> tuple[tuple[int, int], ...]:
        return tuple((y, x) for y in self.row.ys for x in self.columns)


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


def lead_start(rows: Sequence[BlockRow], first: int) -> int:
    """The first block row whose windows reach below the top of block row ``first`` (``first`` when none does).

    Reaches grow from row to row, so every row from there to ``first`` reaches below it too.
    """
    top = rows[first].top
    return next(i for i, row in enumerate(rows) if i == first or row.reach > top)


class BlockPlan(Sequence[Block]):
    """The blocks of ``rows_per_block x cols_per_block`` windows, row by row, made when asked for.

    Column cuts are where a window ends: one window straddles each, kept for the block to its right.
    Only the block rows and the column cuts are held (a few thousand numbers for a 1,000,000² scene),
    not the windows of every block, so a scene of any size is planned in milliseconds.
    """

    def __init__(self, grid: WindowGrid, rows_per_block: int, cols_per_block: int) -> None:
        self.grid = grid
        self.rows = block_rows_of(grid, rows_per_block)
        self.cuts = grid.cuts(grid.xs, grid.win_w, grid.width, cols_per_block)
        self.per_row = len(self.cuts) - 1

    def __len__(self) -> int:
        return len(self.rows) * self.per_row

    def of_rows(self, start: int, stop: int) -> "BlockPlan":
        """The same plan cut to block rows ``[start, stop)``."""
        part = copy.copy(self)
        part.rows = self.rows[start:stop]
        return part

    def columns(self, j: int) -> tuple[int, ...]:
        """Starts of the window columns that touch block column ``j``."""
        xs, c0, c1 = self.grid.xs, self.cuts[j], self.cuts[j + 1]
        return xs[bisect.bisect_right(xs, c0 - self.grid.win_w) : bisect.bisect_left(xs, c1)]

    def __getitem__(self, index: int) -> Block:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        i, j = divmod(index, self.per_row)
        return Block(self.rows[i], self.cuts[j], self.cuts[j + 1], self.columns(j))

    def windows_to_run(self) -> int:
        """Windows the block loop runs: each block's, less those kept from the block to its left.

        Every block row has the same column cuts, so this is the window rows times the new columns of
        each block column: arithmetic over the cuts, not a loop over the windows.
        """
        new, kept = 0, set()
        for j in range(self.per_row):
            columns = self.columns(j)
            new += sum(x not in kept for x in columns)
            kept = {x for x in columns if x + self.grid.win_w > self.cuts[j + 1]}
        return new * sum(len(row.ys) for row in self.rows)


def plan_blocks(grid: WindowGrid, rows_per_block: int, cols_per_block: int) -> BlockPlan:
    """The blocks of ``rows_per_block x cols_per_block`` windows, row by row (:class:`BlockPlan`)."""
    return BlockPlan(grid, rows_per_block, cols_per_block)


def windows_to_run(blocks: Sequence[Block], grid: WindowGrid) -> int:
    """Windows the block loop runs: each block's, less those kept from the block to its left (each window once)."""
    if isinstance(blocks, BlockPlan):
        return blocks.windows_to_run()
    total, kept = 0, set()
    for block in blocks:
        if block.left == 0:
            kept = set()
        total += sum(s not in kept for s in block.starts)
        kept = {s for s in block.starts if s[1] + grid.win_w > block.right}
    return total


class BlockResult(NamedTuple):
    """A block's finished region ``(r0, r1, c0, c1)``, its blended float outputs and where both dates hold data."""

    region: tuple[int, int, int, int]
    outputs: dict[str, torch.Tensor | None]
    valid: np.ndarray | None


@dataclass(frozen=True)
class BlockRead:
    """Both dates read under a block's windows, from ``(top, left)`` in the scene, and where both hold data."""

    top: int
    left: int
    a: np.ndarray
    b: np.ndarray
    valid: np.ndarray | None

    def windows(self, grid: WindowGrid, starts: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows at ``starts``, ``(N, C, win_h, win_w)`` float32 each (channels-last memory)."""
        cut = [(slice(y - self.top, y - self.top + grid.win_h), slice(x - self.left, x - self.left + grid.win_w))
               for y, x in starts]
        return tuple(to_float_batch(np.stack([date[r, c] for r, c in cut])) for date in (self.a, self.b))

    def valid_in(self, region: tuple[int, int, int, int]) -> np.ndarray | None:
        """Where both dates hold data over ``region = (r0, r1, c0, c1)`` of the scene (None: everywhere)."""
        r0, r1, c0, c1 = region
        return None if self.valid is None else self.valid[r0 - self.top : r1 - self.top, c0 - self.left : c1 - self.left]


@dataclass(frozen=True)
class Scene:
    """Both dates of a pair (``pair``), their window grid, the blocks they are predicted in, and their no-data.

    ``bands``: of one date; ``name``: the pair in messages; ``masked``: some pixels may lack data
    (each block then says where); ``georef``: A's CRS, transform and no-data value, for the outputs;
    ``note``: what was done to B, if anything; ``lead``: the first blocks run only for the sums they
    carry into the blocks after them, their own results are not given (see :meth:`band`).
    """

    pair: PairReader
    grid: WindowGrid
    blocks: BlockPlan
    bands: int
    name: str = "the pair"
    masked: bool = False
    georef: Georef | None = None
    note: str | None = None
    lead: int = 0

    @property
    def block_rows(self) -> tuple[BlockRow, ...]:
        """The block rows of :attr:`blocks`, top to bottom."""
        return tuple(self.blocks.rows)

    def band(self, first: int, last: int) -> "Scene":
        """The scene's block rows ``[first, last)`` alone, giving the same results as in the whole scene.

        A block row's windows reach into the rows below it, whose sums start with what the rows above
        carried there. So the band first runs, whole and batched as in the whole scene, every block row
        above whose windows reach below the band's top (the :attr:`lead` blocks: only their carried sums
        are kept), then its own. Each pixel of the band then sums the same window outputs in the same
        order as the whole scene does, and a scene predicted band by band, in any order and on any
        process, equals the scene predicted at once.
        """
        rows = self.block_rows
        if not 0 <= first < last <= len(rows):
            raise ValueError(f"block rows [{first}, {last}) of a scene of {len(rows)}")
        start = lead_start(rows, first)
        return dataclasses.replace(self, blocks=self.blocks.of_rows(start, last), lead=(first - start) * self.blocks.per_row)

    @classmethod
    def of_files(cls, pair: PairSource, windows: WindowSettings, align: int, block_rows: int | None = None,
                 block_cols: int | None = None) -> "Scene":
        """Two open rasters, cut into ``windows`` (starts multiples of ``align``), in blocks of ``block_rows x
        block_cols`` windows (default: :func:`block_windows`)."""
        grid = WindowGrid.for_scene(pair.height, pair.width, windows, align)
        blocks = plan_blocks(grid, block_rows or block_windows(grid.stride), block_cols or block_windows(grid.stride))
        return cls(pair, grid, blocks, pair.bands, str(pair.path_a), pair.may_lack_data, pair.georef, pair.note)

    @classmethod
    def in_memory(cls, a: torch.Tensor, b: torch.Tensor, windows: WindowSettings, align: int) -> "Scene":
        """Two ``(C, H, W)`` float dates held in memory, cut into ``windows``: one block of every window."""
        if a.shape != b.shape or a.dim() != 3:
            raise ValueError(f"both dates must be (C, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        grid = WindowGrid.for_scene(a.shape[1], a.shape[2], windows, align)
        return cls(TensorPair(a, b, grid.padded_h, grid.padded_w), grid, plan_blocks(grid, len(grid.ys), len(grid.xs)),
                   a.shape[0])

    def reading(self, pair: PairReader) -> "Scene":
        """The same scene read through ``pair`` (e.g. the same files with nuisances applied to B)."""
        return dataclasses.replace(self, pair=pair)

    def read(self, block: Block) -> BlockRead:
        """Both dates under the block's windows."""
        top, left = block.starts[0][0], min(x for _, x in block.starts)
        bottom, right = block.starts[-1][0] + self.grid.win_h, max(x for _, x in block.starts) + self.grid.win_w
        return BlockRead(top, left, *self.pair.read(top, left, bottom - top, right - left))


@contextlib.contextmanager
def open_scene(path_a: Path | RasterRef, path_b: Path | RasterRef, windows: WindowSettings, align: int, *,
               outputs: int = 0, block_rows: int | None = None, block_cols: int | None = None,
               region: Sequence[int] | None = None) -> Iterator[Scene]:
    """The scene of two rasters (see :meth:`Scene.of_files`; ``region``: only that part of A's grid, see
    :class:`~densechange.finetune.inference.sources.PairSource`), with GDAL's block cache sized for
    ``outputs`` rasters written.

    GDAL's cache defaults to a share of the RAM and would grow with the scene: it is sized to what
    the blocks need instead (:func:`gdal_cache_mb`).
    """
    with open_raster(path_a) as src:
        width = src.width if region is None else region[3]
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(width, outputs)), PairSource(path_a, path_b, region) as pair:
        scene = Scene.of_files(pair, windows, align, block_rows, block_cols)
        check_carried(path_a, scene.grid, outputs)
        yield scene


SUM_CHANNELS = 4  # the partial sums of a pixel: two change logits, the distance and the weight


def check_carried(path: Path | RasterRef, grid: WindowGrid, outputs: int) -> None:
    """Refuse a scene so wide that what predict holds across it would pass the strip bound, before any window
    runs: the partial sums carried between block rows (the overlap's rows, float32) and two rows of output
    tiles per output raster (:func:`gdal_cache_mb`)."""
    sums = max(grid.win_h - grid.stride, 0) * grid.padded_w * SUM_CHANNELS * 4
    tiles = outputs * 2 * TILE * grid.width
    check_bytes(path, sums + tiles, f"the strips predict holds across the scene ({grid.width} px wide): the partial "
                f"sums carried between block rows ({sums:,} bytes) and two rows of output tiles ({tiles:,} bytes)",
                "Predict the scene in parts (region=[top,left,height,width]), or with a smaller window.overlap.")
