"""One registry entry: named encoder weights as data (URL, hash, architecture, bands, normalisation, source).

Like timm's ``PretrainedCfg``, an entry carries everything the loader needs to fetch, verify,
import and normalise the weights. This module only parses and validates entries; finding them
(:mod:`densechange.checkpoints.registry`) and downloading them (:mod:`densechange.checkpoints.download`) build on it.

A registry file is ``{"version": 1, "entries": [{...}, ...]}``. Required fields: ``name``, ``url``,
``backbone``, ``in_chans`` and a hash (``sha256``, or ``sha256_prefix`` when the file name carries
it). ``importer`` defaults to the layout the file shows, ``mean``/``std`` to that importer's
convention (with a warning), and ``source``/``licence`` are optional.

Every entry is checked against :data:`ENTRY_SCHEMA` (types, ranges, finite numbers, positive std)
before it is used, and the file itself is read within a size and a nesting bound
(:mod:`densechange.checkpoints.limits`): a bad file is one :class:`CheckpointError` naming the entry
and the field, never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import MAX_BANDS, MAX_CHANNELS, REGISTRY_BYTES_ENV, max_registry_bytes
from densechange.checkpoints.schema import Int, Invalid, Items, Number, Record, Text, load_json
from densechange.redact import redact_url

IMPORTERS = ("torchvision", "torchgeo", "timm", "sadl", "densechange")
URL_SCHEMES = ("http", "https", "file", "hf")
REQUIRED = ("name", "url", "backbone", "in_chans")
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


BACKBONE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"  # a timm model name: no "hf-hub:" or "local-dir:" sources
_NAME_HINT = "letters, digits, '.', '_' or '-' (it names a cache folder)"
_HEX64 = Text(pattern=r"[0-9a-f]{64}", hint="64 lowercase hex digits")
_PREFIX = Text(pattern=r"[0-9a-f]{8,63}", hint="8 to 63 lowercase hex digits")
_BANDS = Items(Number(), 1, MAX_BANDS)

# The schema of one entry: every field, its type and its range.
ENTRY_SCHEMA = Record({
    "name": Text(max_len=128, pattern=r"[A-Za-z0-9][A-Za-z0-9._\-]*", hint=_NAME_HINT),
    "url": Text(max_len=4096, min_len=1),
    "backbone": Text(max_len=200, pattern=BACKBONE_PATTERN, hint="a timm model name"),
    "in_chans": Int(1, MAX_BANDS),
    "mean": _BANDS,
    "std": Items(Number(positive=True), 1, MAX_BANDS),
    "source": Text(), "licence": Text(), "description": Text(), "paper": Text(), "normalisation": Text(),
    "importer": Text(choices=IMPORTERS),
    "sha256": _HEX64,
    "sha256_prefix": _PREFIX,
    "size": Int(1, 1 << 44),
    "bands": Items(Text(max_len=64, min_len=1), 0, MAX_BANDS),
    "neck_channels": Int(1, MAX_CHANNELS),
}, required=REQUIRED, nullable=("importer", "sha256", "sha256_prefix", "size"))
MAX_ENTRIES = 1_000_000


def _fail(origin: str, name: Any, message: str) -> CheckpointError:
    return CheckpointError(f"registry {origin}, entry {name!r}: {message}")


def parse_entry(raw: dict[str, Any], origin: str) -> Entry:
    """Validated `Entry` from one JSON object; errors name the registry file, the entry and the field."""
    name = raw.get("name", "?") if isinstance(raw, dict) else "?"
    name = name if isinstance(name, str) and len(name) <= 128 else "?"
    try:
        raw = ENTRY_SCHEMA.check(raw)
    except Invalid as err:
        raise _fail(origin, name, str(err)) from None
    url = raw["url"]
    parts = urlparse(url)
    if parts.scheme not in URL_SCHEMES:
        raise _fail(origin, name, f"url must start with one of {[s + '://' for s in URL_SCHEMES]}, got {redact_url(url)!r}")
    sha256, prefix = raw.get("sha256"), raw.get("sha256_prefix")
    if sha256 is None and prefix is None:
        raise _fail(origin, name, "give sha256 (full, 64 hex digits) or sha256_prefix")
    file_hash = _FILE_HASH_RE.search(parts.path)
    if sha256 is None and (file_hash is None or not file_hash.group(1).startswith(prefix)):
        raise _fail(origin, name, f"sha256_prefix {prefix} is only accepted when the file name carries it "
                                  f"({redact_url(url)})")
    if file_hash and sha256 is not None and not sha256.startswith(file_hash.group(1)):
        raise _fail(origin, name, f"sha256 does not start with the hash {file_hash.group(1)} in the file name")
    in_chans = raw["in_chans"]
    bands = raw.get("bands", [])
    if bands and len(bands) != in_chans:
        raise _fail(origin, name, f"bands must list in_chans={in_chans} band names, got {len(bands)}")
    if ("mean" in raw) != ("std" in raw):
        raise _fail(origin, name, "give both mean and std, or neither (then the importer's convention applies)")
    for key in ("mean", "std"):
        if key in raw and len(raw[key]) != in_chans:
            raise _fail(origin, name, f"{key} has {len(raw[key])} values but in_chans is {in_chans}")
    return Entry(
        name=name, url=url, backbone=raw["backbone"], in_chans=in_chans,
        mean=tuple(float(v) for v in raw.get("mean", ())), std=tuple(float(v) for v in raw.get("std", ())),
        source=raw.get("source", ""), licence=raw.get("licence", ""), importer=raw.get("importer"),
        sha256=sha256, sha256_prefix=prefix, size=raw.get("size"), bands=tuple(bands),
        neck_channels=raw.get("neck_channels", 256), description=raw.get("description", ""),
        paper=raw.get("paper", ""), normalisation=raw.get("normalisation", ""), origin=origin,
    )


def duplicates(names: list[str]) -> dict[str, list[int]]:
    """Each name given more than once, with the positions it appears at: one pass, one dict lookup a name."""
    first: dict[str, int] = {}
    dupes: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        if name in first:
            dupes.setdefault(name, [first[name]]).append(index)
        else:
            first[name] = index
    return dupes


def parse_registry(text: str | bytes, origin: str, max_bytes: int | None = None) -> list[Entry]:
    """Entries of one registry file's JSON text; duplicate names within a file are an error.

    The text is parsed within a size bound (``max_bytes``, default ``DENSECHANGE_REGISTRY_MAX_BYTES``)
    and a nesting bound, and duplicates are found with one pass over the names.
    """
    where = f"registry {origin}"
    limit = max_registry_bytes() if max_bytes is None else max_bytes
    data = load_json(text, where, max_bytes=limit, raise_hint=f"; raise {REGISTRY_BYTES_ENV} to read it")
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise CheckpointError(f"{where} must be a JSON object with an 'entries' list")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:
        raise CheckpointError(f"{where} has version {version!r}; this densechange reads version 1")
    if len(data["entries"]) > MAX_ENTRIES:
        raise CheckpointError(f"{where} has {len(data['entries']):,} entries, more than the {MAX_ENTRIES:,} accepted")
    entries = [parse_entry(raw, origin) for raw in data["entries"]]
    dupes = duplicates([e.name for e in entries])
    if dupes:
        shown = "; ".join(f"{n!r} at entries {', '.join(str(i) for i in at)}" for n, at in list(dupes.items())[:5])
        raise CheckpointError(f"{where} defines {sorted(dupes)[:20]} more than once ({shown})")
    return entries
