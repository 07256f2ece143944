"""The keys of change polygons: written once, read by ``densechange vectorize`` and by ``predict`` as ``vector.*``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

CONNECTIVITY = (4, 8)


@dataclass
class VectorOptions:
    """How change regions become polygons; ``out`` unset writes none."""

    out: Optional[str] = None  # polygon file; its extension picks the format: .gpkg, .fgb, .geojson, .parquet
    layer: Optional[str] = None  # layer name; null: the file's stem
    connectivity: int = 4  # 4: pixels join through edges; 8: through corners too (parts that meet at a corner make one MultiPolygon)
    threshold: Optional[float] = None  # the input is a probability raster: change where p >= threshold
    min_area: float = 0.0  # drop polygons smaller than this many m² (needs a CRS)
    min_pixels: int = 0  # drop regions of fewer changed pixels
    holes: float = 0.0  # fill holes smaller than this many m² (needs a CRS); 0 keeps every hole
    simplify: float = 0.0  # simplification tolerance in CRS units, topology preserved; 0: the exact pixel outlines
    block: int = 1024  # block side in pixels: memory is flat in the scene size
    report: Optional[str] = None  # also write a one-file HTML report (quicklooks, totals, histogram, settings)


@dataclass
class VectorizeConfig(VectorOptions):
    """``densechange vectorize``: the polygon keys and the rasters to read."""

    change: Optional[str] = None  # change map (0 unchanged, 255 changed) or, with threshold, a probability raster
    probability: Optional[Union[bool, str]] = None  # change probability raster; null: CHANGE_probability beside the change map when present; false: none
    distance: Optional[Union[bool, str]] = None  # distance raster; null: CHANGE_distance beside the change map when present; false: none
    a: Optional[str] = None  # first-date image: its file name is recorded, the report shows it
    b: Optional[str] = None  # second-date image, as a
    checkpoint: Optional[str] = None  # the model that made the map: the report shows its card summary
