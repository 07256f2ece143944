"""Where a raster may read its pixels from: the files a VRT references stay inside the dataset.

A VRT is an XML file whose bands read other files, and GDAL follows whatever it names: any file of
the machine (``/etc/passwd`` through a raw raster band, whose bytes then come back as pixels), a
URL (``/vsicurl/``, ``http://``, ``/vsis3/``: opening the file sends requests), another VRT, an
archive member, a WMS or STAC description that in turn reaches the network. A dataset comes from
someone else; the folder the user named is what the user chose to read. So before GDAL opens a
file, :func:`check_sources` reads its first bytes and, for a VRT, its XML (nested VRTs included)
and refuses, with a :class:`DatasetError` naming the file and the reference:

- a source outside the dataset folder (symbolic links resolved, ``relativeToVRT`` honoured);
- a raw raster band (``VRTRawRasterBand``) and a Python pixel function;
- a network source, unless :func:`allow_network_sources` was called (``data.allow_network_sources``);
- a ``/vsi`` file system that is not a local archive (``/vsimem/``, ``/vsistdin/``, ``/vsisparse/``,
  ...), a driver-prefixed name (``NETCDF:...``) whose file cannot be told apart, and a source that is
  an XML or JSON description (WMS, STAC, tile index) rather than a raster.

The dataset folder is the folder a dataset was located at (:func:`confine_to`, called by every
reader that finds a dataset's files); a VRT outside every such folder (a file named on the command
line) may reference files in its own folder and below. This follows GDAL's guidance for files from
untrusted sources (https://gdal.org/user/security.html); the GDAL options that go with it are
:data:`GDAL_READ_OPTIONS`.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from densechange.datasets.errors import DatasetError

__all__ = ["GDAL_READ_OPTIONS", "NETWORK_DRIVERS", "SourcePolicy", "allow_network_sources", "check_sources",
           "confine_to", "is_vrt", "source_policy"]

GDAL_READ_OPTIONS = {
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",  # a raw band reads any file's bytes as pixels (GDAL >= 3.12 honours it)
    "GDAL_VRT_ENABLE_PYTHON": "NO",  # a VRT pixel function may hold Python code
}
"""GDAL options in force whenever the toolkit opens a raster to read."""

NETWORK_DRIVERS = ("WMS", "WMTS", "WCS", "STACTA", "STACIT", "GTI", "DAAS", "EEDA", "EEDAI", "OGCAPI", "PLMOSAIC",
                   "PLSCENES", "ESRIC", "NGW", "Rasterlite")
"""GDAL drivers whose files describe a remote service: skipped (``GDAL_SKIP``), so no file can make GDAL reach one."""

MAX_VRT_BYTES = 16 << 20  # a VRT of a 100,000-tile mosaic is a few MB
MAX_NESTING = 8  # VRTs referencing VRTs

_NETWORK_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsiwebhdfs", "/vsihdfs")
_ARCHIVES = ("/vsizip/", "/vsigzip/", "/vsitar/", "/vsi7z/", "/vsirar/")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")
_REFERENCES = ("SourceFilename", "SourceDataset")


@dataclass(frozen=True)
class SourcePolicy:
    """Where a VRT may read from, and whether it may read over the network.

    ``roots``: a VRT inside the first folder of a pair may read the files inside the second (a dataset
    folder and itself; or a cache of VRTs the toolkit writes for a dataset and that dataset); ``roots``
    may also hold plain folders (the VRTs inside read the files inside).
    """

    roots: tuple[Path | tuple[Path, Path], ...] = ()
    network: bool = False

    def allowed(self, vrt: Path) -> tuple[Path, ...]:
        """The folders whose files the VRT ``vrt`` (resolved) may read: those granted to the innermost folder of
        ``roots`` that holds it, else its own folder."""
        grants: dict[Path, list[Path]] = {}
        for entry in self.roots:
            where, folder = entry if isinstance(entry, tuple) else (entry, entry)
            grants.setdefault(Path(where), []).append(Path(folder))
        holders = sorted((w for w in grants if vrt.is_relative_to(w)), key=lambda w: -len(w.parts))
        return (*dict.fromkeys([holders[0], *grants[holders[0]]]),) if holders else (vrt.parent,)


_policy = SourcePolicy()


def source_policy() -> SourcePolicy:
    """The policy of this process (inherited by data-loading workers)."""
    return _policy


def confine_to(root: str | Path, vrts_in: str | Path | None = None) -> None:
    """Let the VRTs inside ``root`` (a dataset folder), or inside ``vrts_in``, reference the files inside ``root``."""
    global _policy
    root = Path(root).resolve()
    entry = root if vrts_in is None else (Path(vrts_in).resolve(), root)
    if entry not in _policy.roots:
        _policy = replace(_policy, roots=(*_policy.roots, entry))


def allow_network_sources(allow: bool = True) -> None:
    """Let VRTs reference URLs and cloud storage (``data.allow_network_sources=true``)."""
    global _policy
    _policy = replace(_policy, network=bool(allow))


def _head(path: Path, size: int = 1024) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""  # not a readable local file: opening it reports why


def _is_vrt(head: bytes) -> bool:
    return b"<VRTDataset" in head


def is_vrt(path: str | Path) -> bool:
    """Whether ``path`` holds a VRT (by its first bytes, whatever its name)."""
    return _is_vrt(_head(Path(path)))


def _describes_service(head: bytes) -> bool:
    """An XML or JSON text rather than a raster: what GDAL's WMS, STAC, tile-index and similar drivers open."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] in (b"<", b"{", b"[")


def _is_network(reference: str) -> bool:
    lowered = reference.lower()
    return bool(_URL.match(reference)) or any(prefix in lowered for prefix in _NETWORK_VSI)


class _Refusal(Exception):
    """Why one reference is refused (turned into a DatasetError naming the files)."""


def check_sources(path: str | Path, policy: SourcePolicy | None = None) -> None:
    """Refuse ``path`` when it is a VRT (or a service description) that reads from where it may not.

    Reads the first bytes of the file; only a VRT is parsed. See the module docstring for the rules.
    """
    policy = policy or _policy
    path = Path(path)
    head = _head(path)
    if not head:
        return
    if not _is_vrt(head):
        if _describes_service(head) and not policy.network:
            raise DatasetError(f"{path}: an XML or JSON description, not a raster: GDAL would read it as a service "
                               "(WMS, STAC, tile index) that reaches the network. Pass data.allow_network_sources=true "
                               "if it is meant to.")
        return
    top = path.resolve()
    _check_vrt(path, top, policy.allowed(top), policy, (top,))


def _check_vrt(shown: Path, vrt: Path, root: tuple[Path, ...], policy: SourcePolicy, chain: tuple[Path, ...]) -> None:
    """Check every reference of the VRT ``vrt`` (reached from ``shown`` through ``chain``)."""
    via = "" if len(chain) == 1 else " (through " + " -> ".join(p.name for p in chain[1:]) + ")"
    where = f"{shown}{via}"
    try:
        size = vrt.stat().st_size
        if size > MAX_VRT_BYTES:
            raise DatasetError(f"{where}: a VRT of {size} bytes, over the {MAX_VRT_BYTES >> 20} MiB a VRT may have.")
        document = ET.fromstring(vrt.read_bytes())
    except (OSError, ET.ParseError) as err:
        raise DatasetError(f"{where}: cannot read the VRT ({err}).") from err
    for element in document.iter():
        try:
            _check_element(element, vrt, root, policy, chain, shown)
        except _Refusal as refusal:
            inside = " or ".join(map(str, root))
            raise DatasetError(f"{where}: {refusal} Only files inside {inside} may be referenced; see "
                               "docs/security.md for what a VRT may reference.") from None


def _check_element(element: ET.Element, vrt: Path, root: tuple[Path, ...], policy: SourcePolicy,
                   chain: tuple[Path, ...], shown: Path) -> None:
    tag = element.tag
    if tag == "VRTRasterBand" and element.get("subClass") == "VRTRawRasterBand":
        raise _Refusal("a raw raster band (VRTRawRasterBand) reads the bytes of any file as pixels; raw bands are off.")
    if tag == "PixelFunctionLanguage" and (element.text or "").strip().lower() == "python":
        raise _Refusal("a Python pixel function runs code from the file; Python pixel functions are off.")
    values = [element.text or "", *element.attrib.values()]
    for value in values:
        value = value.strip()
        if value and _is_network(value) and not policy.network:
            raise _Refusal(f"it references {value!r}, a network source; network sources are off "
                           "(data.allow_network_sources=true allows them).")
    if tag in _REFERENCES:
        reference = (element.text or "").strip()
        relative = element.get("relativeToVRT", "0").strip() == "1"
        _check_reference(reference, relative, vrt, root, policy, chain, shown)


def _check_reference(reference: str, relative: bool, vrt: Path, root: tuple[Path, ...], policy: SourcePolicy,
                     chain: tuple[Path, ...], shown: Path) -> None:
    if not reference:
        raise _Refusal("it has an empty source name.")
    if _is_network(reference):
        return  # allowed above (policy.network), nothing local to confine
    local = reference
    if local.startswith("/vsisubfile/"):
        local = local.split(",", 1)[1] if "," in local else ""
    while local.startswith(_ARCHIVES):
        local = local.split("/", 2)[2]
    if local.startswith("/vsi"):
        raise _Refusal(f"it references {reference!r}: {local.split('/')[1]} is not a local file or archive.")
    if _DRIVER_PREFIX.match(local) and not re.match(r"^[A-Za-z]:[\\/]", local):
        raise _Refusal(f"it references {reference!r}: a driver-prefixed name whose file cannot be checked; "
                       "reference the file itself.")
    named = Path(local)
    target = _existing_prefix(vrt.parent / named if relative and not named.is_absolute() else named)
    if not any(target.is_relative_to(folder) for folder in root):
        raise _Refusal(f"it references {reference!r} ({target}), outside the dataset folder.")
    head = _head(target) if target.is_file() else b""
    if _is_vrt(head):
        if target in chain or len(chain) > MAX_NESTING:
            raise _Refusal(f"it references {reference!r}, a VRT that refers back to itself or nests over "
                           f"{MAX_NESTING} levels.")
        _check_vrt(shown, target, root, policy, (*chain, target))
    elif head and _describes_service(head) and not policy.network:
        raise _Refusal(f"it references {reference!r}, an XML or JSON description that GDAL may resolve over the "
                       "network (WMS, STAC, tile index), not a raster.")


def _existing_prefix(path: Path) -> Path:
    """``path`` resolved; for an archive member (``a.zip/inner.tif``), the archive file itself."""
    path = Path(path.as_posix())
    candidate = path
    while not candidate.exists() and candidate.parent != candidate:
        candidate = candidate.parent
    return (candidate if candidate.exists() and candidate != path else path).resolve()
