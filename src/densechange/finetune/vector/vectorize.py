"""From a change map on disk to a polygon file: read blocks, polygonise, measure, filter, simplify, write.

The change map is ``predict``'s (0 unchanged, 255 changed, its no-data value declared); with
``threshold`` the input is a probability raster instead (``predict``'s 0..254 with 255 for no-data,
or floats in 0..1) and change is ``p >= threshold``. The probability and distance rasters beside it,
when given or found, must share its grid; they give each polygon its mean and maximum probability
and its mean distance. Everything the report needs (totals, size classes, the probability histogram)
is gathered on the way, so the scene is read once.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
import shapely
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from densechange.datasets import DatasetError
from densechange.datasets.io.sources import GDAL_READ_OPTIONS, check_sources
from densechange.engine.errors import ConfigError
from densechange.finetune.vector.attributes import Measure, fill_holes, record, to_crs
from densechange.finetune.vector.options import CONNECTIVITY, VectorOptions
from densechange.finetune.vector.polygonise import Block, Region, polygonise
from densechange.finetune.vector.write import BATCH, LayerWriter, driver_for

PROBABILITY_SCALE = 254  # predict's probability and distance rasters: round(254 * value), 255 for no-data
DISTANCE_RANGE = 2.0  # the distance raster's 254 is an embedding distance of 2 (opposite embeddings)
HISTOGRAM_BINS = 50
GDAL_CACHE_MB = 32  # each block decodes its file blocks once; GDAL's default (a share of RAM) fills with the scene
SIZE_CLASSES_M2 = (100.0, 1_000.0, 10_000.0)
SIZE_CLASSES_PX = (10.0, 100.0, 1_000.0)


@dataclass
class Inputs:
    """The rasters read and the two dates' file names recorded on every polygon."""

    change: Path
    probability: Path | None = None
    distance: Path | None = None
    dates: tuple[str, str] = ("", "")


@dataclass
class Summary:
    """What one run wrote, for the console line and the report."""

    out: Path
    features: int = 0
    changed_pixels: int = 0
    area_m2: float | None = None  # sum over the written polygons; None without a CRS
    size_classes: dict[str, int] = field(default_factory=dict)
    histogram: np.ndarray | None = None  # counts of the change probability of every pixel with data
    crs: str | None = None
    transform: Affine = field(default_factory=Affine.identity)
    shape: tuple[int, int] = (0, 0)


def beside(change: Path, kind: str) -> Path:
    """``predict``'s name for a raster written beside the change map (``change_probability.tif``)."""
    return change.with_name(f"{change.stem}_{kind}{change.suffix}")


def resolve(change: Path, probability: bool | str | None, distance: bool | str | None,
            dates: tuple[str, str]) -> Inputs:
    """Inputs from the keys: a path, ``false`` (none) or unset (the file beside the change map if present)."""
    def pick(value: bool | str | None, kind: str) -> Path | None:
        if value is None or value is True:
            found = beside(change, kind)
            if value is True and not found.is_file():
                raise DatasetError(f"{kind}=true: {found} not found beside the change map.")
            return found if found.is_file() else None
        if value is False or value == "":
            return None
        if not Path(value).is_file():
            raise DatasetError(f"{kind}={value}: raster not found.")
        return Path(value)

    if not change.is_file():
        raise DatasetError(f"{change}: change map not found.")
    return Inputs(change, pick(probability, "probability"), pick(distance, "distance"), dates)


def check(options: VectorOptions) -> None:
    """Reject option values that make no sense, naming the key."""
    if options.connectivity not in CONNECTIVITY:
        raise ConfigError(f"connectivity={options.connectivity}: choose 4 or 8.")
    if options.block < 1:
        raise ConfigError(f"block={options.block}: a block is at least one pixel.")
    if options.threshold is not None and not 0 < options.threshold <= 1:
        raise ConfigError(f"threshold={options.threshold}: a probability threshold lies in (0, 1].")
    for key in ("min_area", "min_pixels", "holes", "simplify"):
        if getattr(options, key) < 0:
            raise ConfigError(f"{key}={getattr(options, key)}: must be 0 or more.")


def _decode(values: np.ndarray, nodata: float | None, scale: float) -> np.ndarray:
    """``predict``'s 0..254 (255 no-data) as floats in 0..scale, or floats as they are; NaN for no-data."""
    out = values.astype(np.float32)
    missing = np.zeros(values.shape, bool) if nodata is None else values == nodata
    if values.dtype == np.uint8:
        missing |= values == 255
        out *= scale / PROBABILITY_SCALE
    out[missing | np.isnan(out)] = np.nan
    return out


def _grid_of(src: rasterio.DatasetReader, change: rasterio.DatasetReader, name: str) -> None:
    if (src.height, src.width) != (change.height, change.width):
        raise DatasetError(f"{name}: {src.width}x{src.height} pixels, but the change map {change.name} is "
                           f"{change.width}x{change.height}; pass the raster written with it.")


def _open(path: Path, stack: contextlib.ExitStack) -> rasterio.DatasetReader:
    check_sources(path)  # a VRT named here reads only its own folder (datasets.io.sources)
    try:
        with rasterio.Env(**GDAL_READ_OPTIONS):
            return stack.enter_context(rasterio.open(path))
    except RasterioIOError as err:
        raise DatasetError(f"{path}: cannot read it as a raster ({err}).") from err


def _reader(change: rasterio.DatasetReader, inputs: Inputs, options: VectorOptions, stack: contextlib.ExitStack,
            summary: Summary) -> Callable[[Window], Block]:
    prob = _open(inputs.probability, stack) if inputs.probability else None
    dist = _open(inputs.distance, stack) if inputs.distance else None
    for src, path in ((prob, inputs.probability), (dist, inputs.distance)):
        if src is not None:
            _grid_of(src, change, str(path))
    histogram = np.zeros(HISTOGRAM_BINS, np.int64)
    summary.histogram = histogram if (prob is not None or options.threshold is not None) else None

    def read(window: Window) -> Block:
        values = change.read(1, window=window)
        if options.threshold is None:
            valid = values != change.nodata if change.nodata is not None else np.ones(values.shape, bool)
            odd = valid & (values != 0) & (values != 255)
            if odd.any():
                example = values[odd].flat[0]
                raise DatasetError(
                    f"{inputs.change}: holds {example!r} (rows {window.row_off}.., columns {window.col_off}..), "
                    "but a change map holds only 0 and 255 beside its no-data value; if it is a probability "
                    "raster, pass threshold=P to take p >= P as change.")
            changed = valid & (values == 255)
            probability = _decode(prob.read(1, window=window), prob.nodata, 1.0) if prob is not None else None
        else:
            p = _decode(values, change.nodata, 1.0)
            changed = p >= options.threshold  # NaN compares False: no-data is no change
            probability = _decode(prob.read(1, window=window), prob.nodata, 1.0) if prob is not None else p
        if probability is not None:
            seen = probability[~np.isnan(probability)]
            histogram[:] += np.histogram(seen, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
        distance = _decode(dist.read(1, window=window), dist.nodata, DISTANCE_RANGE) if dist is not None else None
        return Block(changed, probability, distance)

    return read


def vectorize(inputs: Inputs, options: VectorOptions, out: Path) -> Summary:
    """Write the change polygons of ``inputs`` to ``out``; the returned :class:`Summary` feeds the report."""
    check(options)
    driver_for(out)  # an unknown format fails before the scene is read
    summary = Summary(out)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), contextlib.ExitStack() as stack:
        change = _open(inputs.change, stack)
        read = _reader(change, inputs, options, stack, summary)
        crs, transform = change.crs, change.transform
        if crs is None:
            warnings.warn(f"{inputs.change} has no CRS: the polygons are in pixel coordinates (column, row) and "
                          "their areas and perimeters are left empty.", UserWarning, stacklevel=2)
            transform = Affine.identity()
            for key in ("min_area", "holes"):
                if getattr(options, key):
                    raise ConfigError(f"{key}={getattr(options, key)} is in m², but {inputs.change} has no CRS; "
                                      "use min_pixels instead.")
        summary.crs = crs.to_string() if crs else None
        summary.transform, summary.shape = transform, (change.height, change.width)
        measure = Measure(crs)
        bounds = SIZE_CLASSES_M2 if measure.metric else SIZE_CLASSES_PX
        unit = "m²" if measure.metric else "px"
        labels = [f"< {bounds[0]:,.0f} {unit}"] + [f"{lo:,.0f} - {hi:,.0f} {unit}" for lo, hi in zip(bounds, bounds[1:])] \
            + [f">= {bounds[-1]:,.0f} {unit}"]
        summary.size_classes = dict.fromkeys(labels, 0)
        layer = options.layer or out.stem
        graduated = summary.histogram is not None
        with LayerWriter.open(out, layer, summary.crs and crs.to_wkt(), graduated) as writer:
            def emit(regions: list[Region]) -> None:
                geometries = to_crs(np.array([r.geometry for r in regions], dtype=object), transform)
                if options.holes:
                    geometries = np.array([fill_holes(g, options.holes, measure) for g in geometries], dtype=object)
                if options.simplify:
                    geometries = shapely.simplify(geometries, options.simplify, preserve_topology=True)
                if measure.metric:
                    areas, perimeters = measure.area_perimeter(geometries)
                    keep = areas >= options.min_area
                    geometries, areas, perimeters = geometries[keep], areas[keep], perimeters[keep]
                    regions = [r for r, k in zip(regions, keep) if k]
                    sizes = areas
                    summary.area_m2 = (summary.area_m2 or 0.0) + float(areas.sum())
                else:
                    areas = perimeters = [None] * len(regions)
                    sizes = np.array([r.stats.pixels for r in regions], dtype=float)
                writer.add(geometries, [record(r, a, p, inputs.dates) for r, a, p in zip(regions, areas, perimeters)])
                summary.changed_pixels += sum(r.stats.pixels for r in regions)
                for i in np.searchsorted(bounds, sizes, side="right"):
                    summary.size_classes[labels[int(i)]] += 1

            batch: list[Region] = []
            for region in polygonise(read, change.height, change.width, options.block, options.connectivity):
                if region.stats.pixels >= options.min_pixels:
                    batch.append(region)
                if len(batch) >= BATCH:
                    emit(batch)
                    batch = []
            if batch:
                emit(batch)
        summary.features = writer.written
    return summary

