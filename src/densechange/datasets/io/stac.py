"""A STAC item read as one raster: the assets holding the bands asked for, stacked on the finest grid.

``densechange predict a=t1.json b=t2.json bands=[red,green,blue,nir]`` picks, for each name, the
asset band whose common name (or name) it is, from the band metadata of the STAC ``eo`` and
``raster`` extensions (``eo:bands``, ``raster:bands``, STAC 1.1 ``bands``; on the asset, or on the
item with an asset's ``eo:bands`` as indexes into it). Where several assets hold a band (a
single-band COG and a three-band preview), a single-band asset wins, then a GeoTIFF. The assets
become one virtual raster on the finest of their grids, the coarser ones resampled bilinearly as
they are read (:func:`~densechange.datasets.io.bandstack.band_stack`, as OSCD's per-band files are
combined); it is held in memory and read like any scene, block by block, each asset by range
requests when it is a URL (:mod:`densechange.datasets.io.remote`).

The item is a local file or an ``http(s)://`` URL; relative asset hrefs resolve against it. The
item is parsed by pystac (``pip install 'densechange[stac]'``).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.bandstack import BandSource, band_stack
from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.remote import RasterRef, RemoteSettings, is_url, reading, scrub, url_ref
from densechange.redact import redact_url

__all__ = ["is_item", "item_raster", "AssetBand"]

_BAND_LISTS = ("eo:bands", "raster:bands", "bands")
_NAME_KEYS = ("common_name", "eo:common_name", "name")
_TIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def is_item(text: str) -> bool:
    """Whether ``text`` names a STAC item by its suffix (``.json``, before any query string)."""
    path = urlsplit(text).path if is_url(text) else text
    return path.lower().endswith(".json")


def _fetch(url: str, settings: RemoteSettings) -> bytes:
    """The item's bytes over HTTP, with ``remote.retries`` and ``remote.timeout_s``, as GDAL reads the assets."""
    scheme = url.partition("://")[0].lower()
    if scheme not in ("http", "https"):
        raise DatasetError(f"{redact_url(url)}: read STAC items from a local file or an http(s):// URL (the assets "
                           "themselves may be s3:// or gs://).")
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(url, timeout=settings.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:  # 429 and 5xx are retried, as GDAL retries the assets
            if err.code not in (429, 500, 502, 503, 504) or attempt >= settings.retries:
                raise DatasetError(f"{redact_url(url)}: cannot read the STAC item (HTTP {err.code}).") from None
        except OSError as err:  # URLError, a timeout, a connection cut short
            raise DatasetError(f"{redact_url(url)}: cannot read the STAC item ({scrub(str(err))}); check the URL "
                               "and the network, or raise remote.timeout_s for a slow server.") from None
        time.sleep(settings.retry_delay_s * 2**attempt)
        attempt += 1


def _load(location: str, settings: RemoteSettings) -> Any:
    """The item at ``location`` as a ``pystac.Item`` whose hrefs resolve against ``location``."""
    try:
        import pystac
    except ImportError as err:
        raise DatasetError(f"{redact_url(location)}: reading STAC items needs pystac: "
                           "pip install 'densechange[stac]'.") from err
    shown = redact_url(location)
    if is_url(location):
        raw, self_href = _fetch(location, settings), location
    else:
        path = Path(location)
        if not path.is_file():
            hint = " (bands= reads the bands of STAC items)" if path.is_dir() else ""
            raise DatasetError(f"{path}: STAC item not found{hint}.")
        raw, self_href = path.read_bytes(), str(path.resolve())
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"{shown}: not a STAC item: not JSON ({err}). bands= reads the bands of STAC items; "
                           "leave it unset to read every band of a raster.") from None
    if not isinstance(data, dict) or data.get("type") != "Feature" or "assets" not in data:
        raise DatasetError(f"{shown}: not a STAC item (a GeoJSON Feature with assets); give the item of one scene.")
    try:
        item = pystac.Item.from_dict(data, href=self_href, preserve_dict=False)
    except (KeyError, TypeError, ValueError, pystac.STACError) as err:
        raise DatasetError(f"{shown}: not a valid STAC item ({err}).") from None
    item.set_self_href(self_href)
    return item


class AssetBand:
    """One band of one asset, with the names it goes by (common name first)."""

    def __init__(self, key: str, asset: Any, index: int, count: int, names: Sequence[str]) -> None:
        self.key, self.asset, self.index, self.count, self.names = key, asset, index, count, tuple(names)

    def matches(self, wanted: str) -> bool:
        return wanted.lower() in (n.lower() for n in self.names)

    def rank(self, order: int) -> tuple[int, int, int]:
        """Single-band assets first, then GeoTIFFs, then the item's order."""
        media = (self.asset.media_type or "").split(";")[0].strip().lower()
        return self.count != 1, media not in _TIFF_TYPES, order

    def label(self) -> str:
        return f"{self.names[0]} ({self.key})" if self.names else self.key


def _names(entry: Any) -> list[str]:
    return [entry[k] for k in _NAME_KEYS if isinstance(entry, dict) and isinstance(entry.get(k), str)]


def asset_bands(item: Any) -> list[AssetBand]:
    """Every band of every asset that carries band metadata, in the item's order."""
    item_bands = item.properties.get("eo:bands") or item.properties.get("bands") or []
    found: list[AssetBand] = []
    for key, asset in item.assets.items():
        lists = [asset.extra_fields.get(k) for k in _BAND_LISTS if isinstance(asset.extra_fields.get(k), list)]
        if not lists:
            continue
        count = max(len(entries) for entries in lists)
        for index in range(count):
            names: list[str] = []
            for entries in lists:
                entry = entries[index] if index < len(entries) else None
                if isinstance(entry, int) and 0 <= entry < len(item_bands):  # an index into the item's eo:bands
                    entry = item_bands[entry]
                names += [n for n in _names(entry) if n not in names]
            found.append(AssetBand(key, asset, index + 1, count, names))
    return found


def _choose(item: Any, wanted: Sequence[str], shown: str) -> list[AssetBand]:
    """The asset band of each name in ``wanted``; a name the item lacks is a :class:`DatasetError` listing its bands."""
    bands = asset_bands(item)
    if not bands:
        keys = list(item.assets)
        raise DatasetError(f"{shown}: the item has no band metadata (eo:bands, raster:bands or bands on its assets), "
                           f"so bands={list(wanted)} cannot be found; its assets: {format_names(keys, len(keys))}.")
    chosen = []
    for name in wanted:
        candidates = [(band.rank(order), band) for order, band in enumerate(bands) if band.matches(name)]
        if not candidates:
            have = list(dict.fromkeys(f"{'/'.join(band.names) or '?'} (asset {band.key})" for band in bands))
            raise DatasetError(f"{shown}: no band named {name!r} (common name or name); the item has "
                               f"{format_names(have, len(have))}.")
        chosen.append(min(candidates, key=lambda c: c[0])[1])
    return chosen


def _raster_of(href: str) -> Path | RasterRef:
    return url_ref(href) if is_url(href) else Path(href)


def _finest(rasters: Sequence[Path | RasterRef], shown: str) -> Path | RasterRef:
    """The raster with the smallest pixels; all must share a CRS and an extent (within a coarse pixel)."""
    grids = []
    for raster in rasters:
        with open_raster(raster) as src:
            grids.append((abs(src.transform.a * src.transform.e), src.crs, src.bounds, abs(src.transform.a), raster))
    crs, bounds = grids[0][1], grids[0][2]
    coarse = max(g[3] for g in grids)
    for area, other_crs, other_bounds, size, raster in grids[1:]:
        if other_crs != crs or any(abs(x - y) > coarse for x, y in zip(bounds, other_bounds)):
            raise DatasetError(f"{shown}: the assets {grids[0][4]} and {raster} do not cover one footprint in one CRS "
                               f"({crs}, {tuple(bounds)} against {other_crs}, {tuple(other_bounds)}); pick bands "
                               "from assets of one scene.")
    return min(grids, key=lambda g: g[0])[4]


def item_raster(location: str, bands: Sequence[str] | None, settings: RemoteSettings) -> RasterRef:
    """The bands ``bands`` (common names or names) of the STAC item at ``location``, as one raster held in memory."""
    shown = redact_url(location)
    if not bands:
        raise DatasetError(f"{shown} is a STAC item: name the bands to read from it in order, e.g. "
                           "bands=[red,green,blue,nir] (their common names), as the model was trained on.")
    item = _load(location, settings)
    chosen = _choose(item, list(bands), shown)
    rasters = {band.key: _raster_of(band.asset.get_absolute_href()) for band in chosen}
    with reading(settings):  # the assets' headers are read here: GDAL's network options apply
        grid = _finest(list(rasters.values()), shown)
        document = band_stack(grid, [BandSource(rasters[band.key], band.index, band.label()) for band in chosen])
    return RasterRef(document, shown)
