"""Named encoder weights: URL, hash, architecture, bands, normalisation, source and licence.

Like timm's ``PretrainedCfg``, an entry is data: the loader needs nothing else to fetch, verify,
import and normalise the weights. Entries come from, in order (a later entry replaces an earlier
one of the same name, so a user file can pin a mirror):

1. ``registry.json`` shipped in this package;
2. ``DENSECHANGE_REGISTRY``: registry files or URLs separated by ``os.pathsep`` or commas;
3. the ``extra`` argument (the config passes its ``registry`` key here).

A registry file is ``{"version": 1, "entries": [{...}, ...]}``; see the shipped file for the fields.

Example:
    >>> entry = get_entry("resnet18_sentinel2_rgb_moco")
    >>> entry.backbone, entry.bands, entry.licence
    ('resnet18', ('B4', 'B3', 'B2'), 'CC-BY-4.0')
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from .errors import CheckpointError

ENV_VAR = "DENSECHANGE_REGISTRY"
IMPORTERS = ("torchvision", "torchgeo", "timm", "sadl", "densechange")
URL_SCHEMES = ("http", "https", "file", "hf")
REQUIRED = ("name", "url", "backbone", "in_chans", "mean", "std", "source", "licence", "importer")
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
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    licence: str
    importer: str
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
    if raw["importer"] not in IMPORTERS:
        raise _fail(origin, name, f"importer must be one of {list(IMPORTERS)}, got {raw['importer']!r}")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise _fail(origin, name, f"size must be a positive number of bytes, got {size!r}")
    for key in ("backbone", "source", "licence"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise _fail(origin, name, f"{key} must be a non-empty string")
    return Entry(
        name=name, url=url, backbone=raw["backbone"], in_chans=in_chans,
        mean=_float_list(origin, name, "mean", raw["mean"], in_chans),
        std=_float_list(origin, name, "std", raw["std"], in_chans),
        source=raw["source"], licence=raw["licence"], importer=raw["importer"],
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


def shipped_registry_text() -> str:
    return resources.files(__package__).joinpath("registry.json").read_text(encoding="utf-8")


def split_sources(value: str) -> list[str]:
    """``DENSECHANGE_REGISTRY`` items: split on commas and ``os.pathsep``, never inside ``scheme://``."""
    pattern = r",|:(?!//)" if os.pathsep == ":" else rf",|{re.escape(os.pathsep)}"
    return [s.strip() for s in re.split(pattern, value) if s.strip()]


def registry_sources(extra: Sequence[str] | str | None = None) -> list[str]:
    """User registry files and URLs, in the order they apply (after the shipped one)."""
    sources = split_sources(os.environ.get(ENV_VAR, ""))
    if isinstance(extra, str):
        sources += split_sources(extra)
    elif extra:
        sources += [str(s) for s in extra]
    return sources


def _read_source(source: str, cache_dir: str | os.PathLike | None) -> str:
    if re.match(r"^[a-z]+://", source, re.IGNORECASE):
        from .download import fetch

        path = fetch(source, cache_dir=cache_dir, refresh=True, progress=False)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise CheckpointError(f"registry file {path} does not exist (named in {ENV_VAR} or the registry option)")
    return Path(path).read_text(encoding="utf-8")


def load_registry(
    extra: Sequence[str] | str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[Entry]:
    """All entries, shipped first, later sources replacing earlier entries of the same name."""
    merged: dict[str, Entry] = {}
    for entry in parse_registry(shipped_registry_text(), "checkpoints/registry.json"):
        merged[entry.name] = entry
    for source in registry_sources(extra):
        for entry in parse_registry(_read_source(source, cache_dir), source):
            merged[entry.name] = entry
    return list(merged.values())


def find_entry(
    name: str, extra: Sequence[str] | str | None = None, cache_dir: str | os.PathLike | None = None
) -> Entry | None:
    """The entry called ``name``, or None."""
    return next((e for e in load_registry(extra, cache_dir) if e.name == name), None)


def get_entry(
    name: str, extra: Sequence[str] | str | None = None, cache_dir: str | os.PathLike | None = None
) -> Entry:
    """The entry called ``name``; an unknown name is an error listing the known ones."""
    entries = load_registry(extra, cache_dir)
    for entry in entries:
        if entry.name == name:
            return entry
    raise CheckpointError(f"no registry entry {name!r}; known: {', '.join(e.name for e in entries)}")
