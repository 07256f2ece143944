"""Polygons of connected change regions, block by block in flat memory, equal to polygonising at once.

GDAL's polygoniser (``rasterio.features.shapes``) traces each block. A region that lies inside a
block is finished there; a region that crosses block edges is traced as one piece per block, and the
pieces are joined by a union-find over the pixels facing each other across the seams. Only pieces
whose set still touches an unread edge are held: the last row of the blocks above (the *front*, one
label per column), the right column of the previous block and one corner pixel for diagonals. A set
with none of its cells on the front is complete: its pieces are unioned and it leaves memory. Memory
is therefore one block plus the regions that touch the front, whatever the scene's size.

Geometry is traced in pixel coordinates (column, row), where every vertex is an integer and unions
are exact, and then put in canonical form (valid, no collinear vertices, normalised ring order): a
region reads the same whichever blocks cut it. With 8-connectivity, parts that meet only at a corner
are one region, a MultiPolygon (a single ring touching itself is not a valid polygon).

Example:
    >>> for region in polygonise(read, height, width, block=1024, connectivity=8):
    ...     region.geometry, region.pixels
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import shapely
from shapely.geometry import shape
from rasterio.features import rasterize, shapes
from rasterio.transform import Affine
from rasterio.windows import Window


@dataclass
class Block:
    """What the polygoniser reads from one window: the change decision and the rasters averaged per region."""

    changed: np.ndarray  # (h, w) bool; no-data is False
    probability: np.ndarray | None = None  # (h, w) float, change probability in [0, 1], NaN for no-data
    distance: np.ndarray | None = None  # (h, w) float, NaN for no-data


@dataclass
class Stats:
    """Sums over a region's changed pixels, merged exactly when pieces join (so means are the whole's)."""

    pixels: int = 0
    prob_sum: float = 0.0
    prob_count: int = 0
    prob_max: float = -np.inf
    dist_sum: float = 0.0
    dist_count: int = 0

    def add(self, other: "Stats") -> None:
        self.pixels += other.pixels
        self.prob_sum += other.prob_sum
        self.prob_count += other.prob_count
        self.prob_max = max(self.prob_max, other.prob_max)
        self.dist_sum += other.dist_sum
        self.dist_count += other.dist_count


@dataclass
class Region:
    """One connected change region: its outline in pixel coordinates and its pixel statistics."""

    geometry: shapely.MultiPolygon
    stats: Stats


@dataclass
class _Set:
    """A union-find root: its pieces' outlines, merged statistics, and how many front cells it holds."""

    geometries: list = field(default_factory=list)
    members: list[int] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    open_cells: int = 0


def canonical(geometries: np.ndarray) -> np.ndarray:
    """The one form of outlines: valid, without collinear vertices, normalised, always MultiPolygons.

    Vectorised over an array of geometries: the per-call cost of GEOS is paid once per block.
    """
    geometries = shapely.make_valid(geometries)
    geometries = shapely.simplify(geometries, 0.0, preserve_topology=True)  # drops the seams' collinear vertices
    parts, index = shapely.get_parts(geometries, return_index=True)
    polygon = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    merged = shapely.multipolygons(parts[polygon], indices=index[polygon])
    return shapely.normalize(merged)


def _piece_stats(labels: np.ndarray, count: int, block: Block) -> list[Stats]:
    """Per-label sums of one block (label 0 is background)."""
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=count + 1)
    result = [Stats(pixels=int(n)) for n in pixels]
    for values, kind in ((block.probability, "prob"), (block.distance, "dist")):
        if values is None:
            continue
        v = values.ravel()
        ok = (flat > 0) & ~np.isnan(v)
        sums = np.bincount(flat[ok], weights=v[ok].astype(np.float64), minlength=count + 1)
        counts = np.bincount(flat[ok], minlength=count + 1)
        if kind == "prob":
            highest = np.full(count + 1, -np.inf)
            np.maximum.at(highest, flat[ok], v[ok].astype(np.float64))
        for i, s in enumerate(result):
            if kind == "prob":
                s.prob_sum, s.prob_count, s.prob_max = float(sums[i]), int(counts[i]), float(highest[i])
            else:
                s.dist_sum, s.dist_count = float(sums[i]), int(counts[i])
    return result[1:]


class _Forest:
    """Union-find over piece ids, holding each root's :class:`_Set`."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.sets: dict[int, _Set] = {}

    def add(self, piece: int, geometry: shapely.Geometry, stats: Stats) -> None:
        self.parent[piece] = piece
        self.sets[piece] = _Set([geometry], [piece], stats)

    def find(self, piece: int) -> int:
        root = piece
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[piece] != root:  # path compression
            self.parent[piece], piece = root, self.parent[piece]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.sets[ra].members) < len(self.sets[rb].members):
            ra, rb = rb, ra
        small = self.sets.pop(rb)
        big = self.sets[ra]
        big.geometries += small.geometries
        big.members += small.members
        big.stats.add(small.stats)
        big.open_cells += small.open_cells
        self.parent[rb] = ra

    def count(self, cells: np.ndarray, sign: int) -> set[int]:
        """Add (``sign`` 1) or remove (-1) front cells holding these piece ids; the roots touched."""
        ids, counts = np.unique(cells[cells > 0], return_counts=True)
        roots = set()
        for piece, n in zip(ids.tolist(), counts.tolist()):
            root = self.find(piece)
            self.sets[root].open_cells += sign * n
            roots.add(root)
        return roots

    def close(self, roots: list[int]) -> list[Region]:
        """Take complete sets out of the forest: their pieces unioned, in canonical form."""
        done = [self.sets.pop(root) for root in roots]
        for s in done:
            for piece in s.members:
                del self.parent[piece]
        outlines = np.array([s.geometries[0] if len(s.geometries) == 1 else shapely.union_all(s.geometries)
                             for s in done], dtype=object)
        return [Region(g, s.stats) for g, s in zip(canonical(outlines), done)] if done else []


def _pairs(lower: np.ndarray, upper: np.ndarray, diagonal: bool) -> np.ndarray:
    """Piece-id pairs of facing cells: ``lower[i]`` against ``upper[i + 1]`` (and ``[i]``, ``[i + 2]`` diagonally).

    ``upper`` has one more cell at each end than ``lower`` (the neighbours across the corners).
    """
    shifts = (0, 1, 2) if diagonal else (1,)
    found = []
    for s in shifts:
        u = upper[s:s + len(lower)]
        both = (lower > 0) & (u > 0)
        found.append(np.stack([lower[both], u[both]], axis=1))
    return np.unique(np.concatenate(found), axis=0)


def polygonise(read: Callable[[Window], Block], height: int, width: int, block: int = 1024,
               connectivity: int = 4) -> Iterator[Region]:
    """Yield every connected region of changed pixels, each once, as soon as no unread block can reach it.

    Args:
        read: the :class:`Block` of a window (rows and columns of the scene).
        height, width: the scene's size in pixels.
        block: block side in pixels; the result does not depend on it.
        connectivity: 4 or 8, as in ``rasterio.features.shapes``.
    """
    diagonal = connectivity == 8
    forest = _Forest()
    front = np.zeros(width, np.int64)  # per column: the piece in the last row read above (0: none)
    left = np.zeros(0, np.int64)  # the right column of the previous block in this row
    corner = 0  # the cell above-left of this block, saved before the previous block overwrote it
    next_id = 1
    rows, cols = range(0, height, block), range(0, width, block)
    for r, y0 in enumerate(rows):
        y1 = min(y0 + block, height)
        last_row = r == len(rows) - 1
        corner, left = 0, np.zeros(0, np.int64)
        for c, x0 in enumerate(cols):
            x1 = min(x0 + block, width)
            last_col = c == len(cols) - 1
            data = read(Window(x0, y0, x1 - x0, y1 - y0))
            labels = np.zeros((y1 - y0, x1 - x0), np.int64)
            touched: set[int] = set()
            if data.changed.any():
                mask = data.changed.astype(np.uint8)
                grid = Affine(1, 0, x0, 0, 1, y0)  # pixel coordinates of the scene
                traced = [g for g, _ in shapes(mask, mask=data.changed, connectivity=connectivity, transform=grid)]
                local = rasterize(((g, i + 1) for i, g in enumerate(traced)), out_shape=labels.shape,
                                  transform=grid, dtype=np.int32)
                for i, (g, s) in enumerate(zip(traced, _piece_stats(local.astype(np.int64), len(traced), data))):
                    forest.add(next_id + i, shape(g), s)
                    touched.add(next_id + i)
                labels = np.where(local > 0, local.astype(np.int64) + next_id - 1, 0)
                next_id += len(traced)
            # join pieces across the top seam (the front, with its corner cells) and the left seam
            if r > 0:
                above = np.concatenate([[corner], front[x0:x1], [front[x1] if x1 < width else 0]])
                for a, b in _pairs(labels[0], above, diagonal):
                    forest.union(int(a), int(b))
            if c > 0:
                beside = np.concatenate([[0], left, [0]])
                for a, b in _pairs(labels[:, 0], beside, diagonal):
                    forest.union(int(a), int(b))
            # the front moves: this block's bottom row and right column replace what it consumed
            next_corner = int(front[x1 - 1]) if not last_col else 0
            touched |= forest.count(np.concatenate([front[x0:x1], [corner], left]), -1)
            if next_corner:
                forest.count(np.array([next_corner]), 1)
            front[x0:x1] = labels[-1]
            left = labels[:, -1].copy() if not last_col else np.zeros(0, np.int64)
            corner = next_corner
            touched |= forest.count(np.concatenate([labels[-1] if not last_row else [], left]), 1)
            roots = sorted({forest.find(p) for p in touched if p in forest.parent})
            yield from forest.close([root for root in roots if forest.sets[root].open_cells == 0])
        if last_row:
            break
    if forest.sets:  # every cell of the front was consumed or never counted
        raise RuntimeError(f"{len(forest.sets)} change regions left open after the last block")
