"""Rasters read straight from storage: ``https://``, ``http://``, ``s3://`` and ``gs://`` URLs through GDAL.

A URL is opened by GDAL's virtual file systems (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``), which
fetch byte ranges: a window read of a tiled GeoTIFF or COG fetches the tiles under the window and
the header, never the whole file. Credentials come only from the environment and GDAL's own
options (``AWS_*``, ``GS_*``, ``GDAL_HTTP_*``); the toolkit never reads or records them, and every
URL it shows goes through :func:`densechange.redact.redact_url` (query values and user-info
masked). GDAL's own messages name files by their base name with the query string, so every query
in them is masked too (:func:`scrub`), in errors and in rasterio's log.

The GDAL options set around reading (:func:`reading`), and why:

- ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: opening a file neither lists its "folder" (a bucket
  listing or an HTML index) nor probes sidecars (``.aux.xml``, ``.ovr``, ``.msk``) one request
  each; a COG holds its overviews and mask itself.
- ``GDAL_HTTP_MULTIRANGE=YES`` with ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES``: the tiles of one
  window are fetched by parallel range requests, adjacent tiles merged into one range.
- ``GDAL_HTTP_MULTIPLEX=YES``: those requests share one HTTP/2 connection where the server offers it.
- ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``: ``remote.retries`` and ``remote.retry_delay_s``
  (GDAL retries a request answered 429 or 5xx, doubling the delay between tries).
- ``GDAL_HTTP_CONNECTTIMEOUT`` and ``GDAL_HTTP_LOW_SPEED_TIME`` (under ``GDAL_HTTP_LOW_SPEED_LIMIT``
  = 1 byte/s): ``remote.timeout_s``; a server that stops answering for that long fails the request
  (GDAL does not retry it), while a slow but steady transfer of a large tile is not cut.

``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` is left unset: it would refuse URLs whose path does not end in
a raster suffix (signed URLs, API endpoints), and ``EMPTY_DIR`` already stops the extra requests.
"""
from __future__ import annotations

import contextlib
import logging
import re
import dataclasses
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import rasterio
import rasterio.env

from densechange.datasets.errors import DatasetError
from densechange.redact import MASK, redact_text, redact_url

__all__ = ["RemoteSettings", "RasterRef", "is_url", "url_ref", "gdal_path", "reading", "scrub"]

_VSI = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}


@dataclass
class RemoteSettings:
    """How GDAL reads URLs: the ``remote`` section of ``densechange predict``."""

    retries: int = 3  # tries a request answered HTTP 429 or 5xx again, this many times
    retry_delay_s: float = 1.0  # seconds before the first retry (doubled for each further one)
    timeout_s: float = 30.0  # a request fails when the server sends nothing for this many seconds


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL GDAL reads remotely (``http(s)://``, ``s3://``, ``gs://``)."""
    return isinstance(text, str) and text.partition("://")[0].lower() in _VSI and "://" in text


def gdal_path(url: str) -> str:
    """The GDAL name of ``url``: ``/vsicurl/https://...``, ``/vsis3/bucket/key``, ``/vsigs/bucket/key``."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    return f"{_VSI[scheme]}{url}" if scheme in ("http", "https") else f"{_VSI[scheme]}{rest}"


_QUERY_RE = re.compile(r"\?([^\s'\"<>`,;()]+)")  # a query string without its URL, as GDAL writes "b.tif?token=..."


def scrub(text: str) -> str:
    """``text`` with every URL redacted and every other query string's values masked."""
    text = redact_text(text)
    return _QUERY_RE.sub(lambda m: "?" + "&".join(
        part if part.endswith(MASK) else f"{part.partition('=')[0]}={MASK}" if "=" in part else MASK
        for part in m.group(1).split("&")), text)


@dataclass(frozen=True)
class RasterRef:
    """A raster GDAL opens by a name that is not a local path: a URL, or a VRT document held in memory.

    ``gdal`` is what GDAL opens; ``shown`` names it in messages (its URLs redacted). ``str()``
    gives ``shown``, so a reference reads like a path in every message that names a file.
    """

    gdal: str = dataclasses.field(repr=False)
    shown: str

    def __str__(self) -> str:
        return self.shown

    @property
    def name(self) -> str:
        """The last part of the shown path (no query), as ``Path.name`` gives a file's."""
        return urlsplit(self.shown).path.rstrip("/").rpartition("/")[2] or self.shown

    def error(self, doing: str, err: BaseException, seconds: float = 0.0) -> DatasetError:
        """A :class:`DatasetError` naming this reference, with GDAL's reason scrubbed of secrets.

        A failure after ``seconds`` of at least the silence allowed (``remote.timeout_s``) is named
        as such: GDAL then only says that what it received is not a raster.
        """
        silence = rasterio.env.get_gdal_config("GDAL_HTTP_LOW_SPEED_TIME")
        if silence is not None and seconds >= float(silence):
            reason = f"the server sent nothing for {float(silence):g} s, remote.timeout_s"
        else:
            reason = scrub(gdal_reason(err))
        return DatasetError(f"{self.shown}: {doing} failed ({reason}). The server refused the request, stopped "
                            "answering for remote.timeout_s seconds or sent a short response: check the URL, the "
                            "network and the credentials (AWS_*, GS_*, GDAL_HTTP_* in the environment); "
                            "remote.retries and remote.timeout_s tune the retries.")


def url_ref(url: str) -> RasterRef:
    """The :class:`RasterRef` of a raster URL."""
    return RasterRef(gdal_path(url), redact_url(url))


def gdal_reason(err: BaseException) -> str:
    """The first line of GDAL's own message (rasterio chains it as the cause of a generic one)."""
    while err.__cause__ is not None and "previous exception" in str(err):
        err = err.__cause__
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def gdal_options(settings: RemoteSettings) -> dict[str, object]:
    """The GDAL configuration options of :func:`reading` (see the module docstring)."""
    timeout = max(1, round(settings.timeout_s))
    return dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MULTIRANGE="YES",
                GDAL_HTTP_MERGE_CONSECUTIVE_RANGES="YES", GDAL_HTTP_MULTIPLEX="YES",
                GDAL_HTTP_MAX_RETRY=int(settings.retries), GDAL_HTTP_RETRY_DELAY=float(settings.retry_delay_s),
                GDAL_HTTP_CONNECTTIMEOUT=timeout, GDAL_HTTP_LOW_SPEED_TIME=timeout, GDAL_HTTP_LOW_SPEED_LIMIT=1)


def check_settings(settings: RemoteSettings) -> None:
    """Raise a :class:`DatasetError` for settings GDAL cannot use."""
    if settings.retries < 0 or settings.retry_delay_s < 0 or settings.timeout_s <= 0:
        raise DatasetError(f"remote.retries={settings.retries}, remote.retry_delay_s={settings.retry_delay_s}, "
                           f"remote.timeout_s={settings.timeout_s}: retries and the delay must be >= 0 and the "
                           "timeout > 0.")


class _Scrubber(logging.Filter):
    """Masks queries in rasterio's log records (it logs GDAL's messages, which name files with their query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


@contextlib.contextmanager
def reading(settings: RemoteSettings) -> Iterator[None]:
    """GDAL set up for reading URLs (:func:`gdal_options`), with query strings kept out of rasterio's log."""
    check_settings(settings)
    scrubber = _Scrubber()
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
               if name == "rasterio" or name.startswith("rasterio.")]
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        with rasterio.Env(**gdal_options(settings)):
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)
