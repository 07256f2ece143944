"""Named encoder weights: URL, hash, architecture, bands, normalisation, source and licence.

Like timm's ``PretrainedCfg``, an entry is data: the loader needs nothing else to fetch, verify,
import and normalise the weights. Entries come from, in order (a later entry replaces an earlier
one of the same name, so a user file can pin a mirror):

1. ``registry.json`` shipped in this package;
2. ``DENSECHANGE_REGISTRY``: registry files or URLs separated by ``os.pathsep`` or commas (a URL's
   ``host:port`` is never split);
3. the ``extra`` argument (the config passes its ``registry`` key here).

A registry file is ``{"version": 1, "entries": [{...}, ...]}``; :mod:`densechange.checkpoints.entry` parses it
and checks every entry. A file is read whole only up to ``DENSECHANGE_REGISTRY_MAX_BYTES`` (16 MiB), and
a URL's query and user-info (an access token) are masked wherever the registry is named.

Example:
    >>> entry = get_entry("resnet18_sentinel2_rgb_moco")
    >>> entry.backbone, entry.bands, entry.licence
    ('resnet18', ('B4', 'B3', 'B2'), 'CC-BY-4.0')
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Sequence

from densechange.checkpoints.download import DownloadRequest, fetch
from densechange.checkpoints.entry import Entry, parse_registry
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import REGISTRY_BYTES_ENV, max_registry_bytes
from densechange.redact import redact_url

ENV_VAR = "DENSECHANGE_REGISTRY"


def shipped_registry_text() -> str:
    return resources.files(__package__).joinpath("registry.json").read_text(encoding="utf-8")


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/,]*")


def split_sources(value: str) -> list[str]:
    """``DENSECHANGE_REGISTRY`` items, split on commas and ``os.pathsep``.

    A URL's host part (``host:port``, ``user@host``) is never split: on POSIX, where the separator
    is ``:``, a URL runs to the next comma or to the next ``:`` after its host.
    """
    items: list[str] = []
    for chunk in value.split(","):
        if os.pathsep != ":":
            items += chunk.split(os.pathsep)
            continue
        rest = chunk.strip()
        while rest:
            head = _SCHEME_RE.match(rest)
            start = head.end() if head else 0
            cut = rest.find(":", start)
            item, rest = (rest, "") if cut < 0 else (rest[:cut], rest[cut + 1:].lstrip())
            items.append(item)
    return [s.strip() for s in items if s.strip()]


def registry_sources(extra: Sequence[str] | str | None = None) -> list[str]:
    """User registry files and URLs, in the order they apply (after the shipped one)."""
    sources = split_sources(os.environ.get(ENV_VAR, ""))
    if isinstance(extra, str):
        sources += split_sources(extra)
    elif extra:
        sources += [str(s) for s in extra]
    return sources


def _read_source(source: str, cache_dir: str | os.PathLike | None) -> bytes:
    """The bytes of a registry file or URL, never more than ``DENSECHANGE_REGISTRY_MAX_BYTES``."""
    limit = max_registry_bytes()
    if re.match(r"^[a-z][a-z0-9+.\-]*://", source, re.IGNORECASE):
        request = DownloadRequest(source, max_bytes=limit, max_bytes_key=REGISTRY_BYTES_ENV)
        path = fetch(request, cache_dir=cache_dir, refresh=True, progress=False)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise CheckpointError(f"registry file {path} does not exist (named in {ENV_VAR} or the registry option)")
    size = Path(path).stat().st_size
    if size > limit:
        raise CheckpointError(f"registry {redact_url(source)} is {size:,} bytes, more than the {limit:,} accepted; "
                              f"raise {REGISTRY_BYTES_ENV} to read it")
    with open(path, "rb") as f:
        return f.read(limit + 1)


def load_registry(
    extra: Sequence[str] | str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[Entry]:
    """All entries, shipped first, later sources replacing earlier entries of the same name."""
    merged: dict[str, Entry] = {}
    for entry in parse_registry(shipped_registry_text(), "checkpoints/registry.json"):
        merged[entry.name] = entry
    for source in registry_sources(extra):
        for entry in parse_registry(_read_source(source, cache_dir), redact_url(source)):
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
