"""What ``a=`` and ``b=`` name: a local raster (or folder), a raster URL, or a STAC item's bands.

A URL (``https://``, ``http://``, ``s3://``, ``gs://``) is read by GDAL's range requests
(:mod:`~densechange.datasets.io.remote`); a STAC item (a ``.json`` file or URL, or any file or URL
when ``bands=`` is set, e.g. a STAC API's item URL) becomes the raster of its bands
(:mod:`~densechange.datasets.io.stac`). Both are a :class:`~densechange.datasets.io.remote.RasterRef`;
a local path stays a ``Path``. GDAL's network options apply only while such inputs are read
(:func:`input_reading`): a local scene keeps GDAL's defaults, e.g. finding a PNG's ``.aux.xml`` sidecar.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ContextManager, Sequence

from densechange.datasets.io.remote import RasterRef, RemoteSettings, is_url, reading, url_ref
from densechange.datasets.io.stac import is_item, item_raster

__all__ = ["scene_input", "input_reading", "is_remote_input"]


def is_remote_input(text: str, bands: Sequence[str] | None) -> bool:
    """Whether ``text`` is read through GDAL's network options: a URL, or a STAC item (whose assets may be URLs)."""
    return is_url(text) or is_item(text) or bool(bands)


def scene_input(text: str, bands: Sequence[str] | None, settings: RemoteSettings) -> Path | RasterRef:
    """The raster (or folder) ``text`` names; with ``bands`` set, it names a STAC item and those are its bands read."""
    if is_item(text) or bands:
        return item_raster(text, bands, settings)
    return url_ref(text) if is_url(text) else Path(text)


def input_reading(a: str, b: str, bands: Sequence[str] | None, settings: RemoteSettings) -> ContextManager[None]:
    """GDAL set up for URLs (:func:`~densechange.datasets.io.remote.reading`) when ``a`` or ``b`` is remote, else
    nothing."""
    return reading(settings) if is_remote_input(a, bands) or is_remote_input(b, bands) else contextlib.nullcontext()
