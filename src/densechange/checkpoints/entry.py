"""One registry entry: named encoder weights as data (URL, hash, architecture, bands, normalisation, source).

Like timm's ``PretrainedCfg``, an entry carries everything the loader needs to fetch, verify,
import and normalise the weights. This module only parses and validates entries; finding them
(:mod:`densechange.checkpoints.registry`) and downloading them (:mod:`densechange.checkpoints.download`) build on it.

A registry file is ``{"version": 1, "entries": [{...}, ...]}``. Required fields: ``name``, ``url``,
``backbone``, ``in_chans`` and a hash (``sha256``, or ``sha256_prefix`` when the file name carries
it). ``importer`` defaults to the layout the file shows, ``mean``/``std`` to that importer's
convention (with a warning), and ``source``/``licence`` are optional.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from densechange.checkpoints.errors import CheckpointError

IMPORTERS = ("torchvision", "torchgeo", "timm", "sadl", "densechange")
URL_SCHEMES = ("http", "https", "file", "hf")
REQUIRED = ("name", "url", "backbone", "in_chans")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PREFIX_RE = re.compile(r"^[0-9a-f]{8,63}$")
_FILE_HASH_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Entry:
    """One named set of encoder weights."""

    name: str
    url: str
    backbone: str
    in_chans: int
    mean: tuple[float, ...] = ()  # empty: the importer's convention (see checkpoints.importers.default_normalisation)
    std: tuple[float, ...] = ()
    source: str = ""
    licence: str = ""
    importer: str | None = None  # None: detected from the file
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    bands: tuple[str, ...] = ()
    neck_channels: int = 256
    description: str = ""
    paper: str = ""
    normalisation: str = ""
    origin: str = field(default="", compare=False)

    @property
    def hash_id(self) -> str:
        """The full hash, or the published prefix: what names the entry's cache folder."""
        return self.sha256 or self.sha256_prefix or ""

    def matches(self, digest: str) -> bool:
        """Whether a file's sha256 ``digest`` is the one this entry publishes."""
        return digest == self.sha256 if self.sha256 else digest.startswith(self.sha256_prefix or "\0")


def _fail(origin: str, name: str, message: str) -> CheckpointError:
    return CheckpointError(f"registry {origin}, entry {name!r}: {message}")


def _float_list(origin: str, name: str, key: str, value: Any, length: int) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _fail(origin, name, f"{key} must be a list of numbers, got {value!r}")
    if len(value) != length:
        raise _fail(origin, name, f"{key} has {len(value)} values but in_chans is {length}")
    return tuple(float(v) for v in value)


def parse_entry(raw: dict[str, Any], origin: str) -> Entry:
    """Validated `Entry` from one JSON object; errors name the registry file and the entry."""
    name = raw.get("name", "?") if isinstance(raw, dict) else "?"
    if not isinstance(raw, dict):
        raise _fail(origin, name, f"entries must be JSON objects, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise _fail(origin, name, f"missing fields {missing}")
    unknown = sorted(set(raw) - set(Entry.__dataclass_fields__) - {"origin"})
    if unknown:
        raise _fail(origin, name, f"unknown fields {unknown}; known: {sorted(Entry.__dataclass_fields__)}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(origin, name, "name must be letters, digits, '.', '_' or '-' (it names a cache folder)")
    url = raw["url"]
    scheme = urlparse(url).scheme if isinstance(url, str) else ""
    if scheme not in URL_SCHEMES:
        raise _fail(origin, name, f"url must start with one of {[s + '://' for s in URL_SCHEMES]}, got {url!r}")
    sha256, prefix = raw.get("sha256"), raw.get("sha256_prefix")
    if sha256 is None and prefix is None:
        raise _fail(origin, name, "give sha256 (full, 64 hex digits) or sha256_prefix")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256_RE.match(sha256)):
        raise _fail(origin, name, f"sha256 must be 64 lowercase hex digits, got {sha256!r}")
    if prefix is not None and not (isinstance(prefix, str) and _PREFIX_RE.match(prefix)):
        raise _fail(origin, name, f"sha256_prefix must be 8 to 63 lowercase hex digits, got {prefix!r}")
    file_hash = _FILE_HASH_RE.search(urlparse(url).path)
    if sha256 is None and (file_hash is None or not file_hash.group(1).startswith(prefix)):
        raise _fail(origin, name, f"sha256_prefix {prefix} is only accepted when the file name carries it ({url})")
    if file_hash and sha256 is not None and not sha256.startswith(file_hash.group(1)):
        raise _fail(origin, name, f"sha256 does not start with the hash {file_hash.group(1)} in the file name")
    in_chans = raw["in_chans"]
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise _fail(origin, name, f"in_chans must be a positive integer, got {in_chans!r}")
    bands = raw.get("bands", [])
    if bands and (not isinstance(bands, list) or len(bands) != in_chans):
        raise _fail(origin, name, f"bands must list in_chans={in_chans} band names, got {bands!r}")
    importer = raw.get("importer")
    if importer is not None and importer not in IMPORTERS:
        raise _fail(origin, name, f"importer must be one of {list(IMPORTERS)}, got {importer!r}")
    if ("mean" in raw) != ("std" in raw):
        raise _fail(origin, name, "give both mean and std, or neither (then the importer's convention applies)")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise _fail(origin, name, f"size must be a positive number of bytes, got {size!r}")
    if not isinstance(raw["backbone"], str) or not raw["backbone"]:
        raise _fail(origin, name, "backbone must be a non-empty string")
    for key in ("source", "licence", "description", "paper", "normalisation"):
        if not isinstance(raw.get(key, ""), str):
            raise _fail(origin, name, f"{key} must be a string")
    return Entry(
        name=name, url=url, backbone=raw["backbone"], in_chans=in_chans,
        mean=_float_list(origin, name, "mean", raw["mean"], in_chans) if "mean" in raw else (),
        std=_float_list(origin, name, "std", raw["std"], in_chans) if "std" in raw else (),
        source=raw.get("source", ""), licence=raw.get("licence", ""), importer=importer,
        sha256=sha256, sha256_prefix=prefix, size=size, bands=tuple(bands),
        neck_channels=int(raw.get("neck_channels", 256)), description=raw.get("description", ""),
        paper=raw.get("paper", ""), normalisation=raw.get("normalisation", ""), origin=origin,
    )


def parse_registry(text: str, origin: str) -> list[Entry]:
    """Entries of one registry file's JSON text; duplicate names within a file are an error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"registry {origin} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise CheckpointError(f"registry {origin} must be a JSON object with an 'entries' list")
    if data.get("version", 1) != 1:
        raise CheckpointError(
            f"registry {origin} has version {data.get('version')!r}; this densechange reads version 1")
    entries = [parse_entry(raw, origin) for raw in data["entries"]]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CheckpointError(f"registry {origin} defines {dupes} more than once")
    return entries


