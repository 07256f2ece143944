"""What each change polygon carries, and the measures in metres its options are given in.

Areas and perimeters are in m² and m: planar in a projected CRS (scaled by its unit, so a CRS in
feet still reports m²), geodesic on the CRS's ellipsoid in a geographic one (degrees have no area).
Without a CRS the polygons stay in pixel coordinates and the metric fields are null.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine

from densechange.finetune.vector.polygonise import Region

FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "int64"),
    ("area_m2", "float64"),
    ("perimeter_m", "float64"),
    ("pixels", "int64"),
    ("prob_mean", "float64"),
    ("prob_max", "float64"),
    ("dist_mean", "float64"),
    ("date_a", "object"),
    ("date_b", "object"),
)
"""The attribute table, in order: name and NumPy type (``object``: text)."""


@dataclass(frozen=True)
class Measure:
    """Areas and lengths in metres for geometry in a CRS, or none without one."""

    crs: CRS | None

    def __post_init__(self) -> None:
        geod = None
        factor = 1.0
        if self.crs is not None and self.crs.is_geographic:
            from pyproj import CRS as ProjCRS  # only geographic scenes need the ellipsoid

            geod = ProjCRS.from_wkt(self.crs.to_wkt()).get_geod()
        elif self.crs is not None:
            factor = float(self.crs.linear_units_factor[1])
        object.__setattr__(self, "_geod", geod)
        object.__setattr__(self, "_factor", factor)

    @property
    def metric(self) -> bool:
        return self.crs is not None

    def area(self, geometry: shapely.Geometry) -> float:
        return float(self.area_perimeter(np.array([geometry], dtype=object))[0][0])

    def area_perimeter(self, geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(m², m)`` of each polygon (holes subtracted, their rings counted in the perimeter)."""
        if self._geod is not None:
            pairs = np.array([self._geod.geometry_area_perimeter(g) for g in geometries]).reshape(-1, 2)
            return np.abs(pairs[:, 0]), pairs[:, 1]
        return shapely.area(geometries) * self._factor ** 2, shapely.length(geometries) * self._factor


def to_crs(geometry: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel coordinates (column, row) to the raster's CRS by its affine transform."""
    a, b, c, d, e, f = transform[:6]

    def affine(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=1)

    return shapely.transform(geometry, affine)


def fill_holes(geometry: shapely.MultiPolygon, below: float, measure: Measure) -> shapely.MultiPolygon:
    """Drop the holes smaller than ``below`` m² (the region then covers them)."""
    if below <= 0:
        return geometry
    parts = []
    for polygon in geometry.geoms:
        kept = [ring for ring in polygon.interiors if measure.area(shapely.Polygon(ring)) >= below]
        parts.append(shapely.Polygon(polygon.exterior, kept))
    return shapely.MultiPolygon(parts)


def record(region: Region, area: float | None, perimeter: float | None, dates: tuple[str, str]) -> dict[str, Any]:
    """The attribute row of a region whose final geometry measures ``area`` and ``perimeter``; the writer sets ``id``."""
    s = region.stats
    return {
        "area_m2": None if area is None else float(area),
        "perimeter_m": None if perimeter is None else float(perimeter),
        "pixels": s.pixels,
        "prob_mean": s.prob_sum / s.prob_count if s.prob_count else None,
        "prob_max": s.prob_max if s.prob_count else None,
        "dist_mean": s.dist_sum / s.dist_count if s.dist_count else None,
        "date_a": dates[0],
        "date_b": dates[1],
    }
