"""Change polygons: one feature per connected change region of a change map, streamed at scene scale.

:mod:`.options` holds the keys (shared by ``densechange vectorize`` and ``predict``'s ``vector.*``),
:mod:`.polygonise` the block-by-block polygoniser, :mod:`.attributes` what each polygon carries,
:mod:`.write` the GDAL formats and the QGIS style, :mod:`.report` the HTML report and
:mod:`.vectorize` the pipeline that ties them. Only :mod:`.options` is imported here: the geometry
libraries (the ``vector`` extra) load when a polygon is asked for.
"""
from densechange.finetune.vector.options import VectorOptions, VectorizeConfig

__all__ = ["VectorOptions", "VectorizeConfig"]
