"""Polygon files through GDAL's drivers (pyogrio): the format by the extension, features streamed in batches.

The layer is created with its full schema before the first feature, so an empty change map still
gives a layer with every field (GeoJSON alone has no schema without features), and features are
appended a batch at a time, so memory does not grow with their number. The file appears under its
name only when complete (:func:`densechange.atomic.atomic_path`); a GeoPackage gets the QGIS style
(:mod:`.style`) before that.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import shapely

from densechange.atomic import OutputError, atomic_path, output_error
from densechange.engine.errors import ConfigError
from densechange.finetune.vector.attributes import FIELDS
from densechange.finetune.vector.style import add_style

FORMATS = {".gpkg": "GPKG", ".fgb": "FlatGeobuf", ".geojson": "GeoJSON", ".json": "GeoJSON", ".parquet": "Parquet"}
"""File extension -> GDAL driver (GeoParquet needs a GDAL built with Parquet)."""
BATCH = 4096


def available() -> dict[str, str]:
    """The extensions whose driver the installed GDAL can write."""
    from pyogrio import list_drivers

    drivers = list_drivers(write=True)
    return {ext: name for ext, name in FORMATS.items() if name in drivers}


def driver_for(path: Path) -> str:
    """The GDAL driver for ``path``'s extension, or a :class:`ConfigError` listing what this GDAL writes."""
    ext = path.suffix.lower()
    usable = available()
    if ext in usable:
        return usable[ext]
    listed = ", ".join(f"{e} ({d})" for e, d in usable.items())
    if ext in FORMATS:
        raise ConfigError(f"vector.out={path}: the installed GDAL has no {FORMATS[ext]} driver for {ext} files; "
                          f"write one of: {listed}.")
    raise ConfigError(f"vector.out={path}: unknown polygon format {ext or '(no extension)'!r}; write one of: {listed}.")


class LayerWriter:
    """Appends features to one layer in batches; :meth:`open` yields it and publishes the file at the end."""

    def __init__(self, path: Path, driver: str, layer: str, crs: str | None) -> None:
        self.path, self.driver, self.layer, self.crs = path, driver, layer, crs
        self.rows: list[dict[str, Any]] = []
        self.geometries: list[bytes] = []
        self.written = 0
        self._created = False  # the layer exists in the file: later batches append

    def add(self, geometries: np.ndarray, rows: list[dict[str, Any]]) -> None:
        """Queue features (ids 1, 2, ... in order of arrival); a full batch goes to the file."""
        first = self.written + len(self.rows) + 1
        self.rows += [{**row, "id": first + i} for i, row in enumerate(rows)]
        self.geometries += list(shapely.to_wkb(geometries))
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self, create: bool = False) -> None:
        from pyogrio.raw import write

        if not self.rows and not create:
            return
        columns = [np.array([r[name] for r in self.rows], dtype=kind) if kind != "float64" else
                   np.array([np.nan if r[name] is None else r[name] for r in self.rows], dtype=np.float64)
                   for name, kind in FIELDS]
        with warnings.catch_warnings():  # no CRS: the caller has said so, in its own words
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            write(self.path, np.array(self.geometries, dtype=object), field_data=columns,
                  fields=[n for n, _ in FIELDS], crs=self.crs, geometry_type="MultiPolygon", driver=self.driver,
                  layer=self.layer, append=self._created)
        self._created = True
        self.written += len(self.rows)
        self.rows, self.geometries = [], []

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: Path, layer: str, crs: str | None, graduated: bool) -> Iterator["LayerWriter"]:
        driver = driver_for(out)
        with atomic_path(out, suffix=out.suffix) as tmp:
            tmp.unlink()  # GDAL creates the file itself; the name stays ours (unique in its folder)
            writer = cls(tmp, driver, layer, crs)
            try:
                if driver != "GeoJSON":
                    writer.flush(create=True)  # the schema, before any feature
                yield writer
                if writer.written == 0 and driver == "GeoJSON":
                    writer.flush(create=True)
                writer.flush()
                if driver == "GPKG":
                    add_style(tmp, layer, "geom", graduated)
            except (OutputError, ConfigError):
                raise
            except OSError as err:
                raise output_error(out, err) from err
            except Exception as err:  # GDAL's own write errors (pyogrio.errors.DataSourceError...)
                if type(err).__module__.startswith("pyogrio"):
                    raise output_error(out, err) from err
                raise
