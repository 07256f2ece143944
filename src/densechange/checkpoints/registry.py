"""Named encoder weights: URL, hash, architecture, bands, normalisation, source and licence.

Like timm's ``PretrainedCfg``, an entry is data: the loader needs nothing else to fetch, verify,
import and normalise the weights. Entries come from, in order (a later entry replaces an earlier
one of the same name, so a user file can pin a mirror):

1. ``registry.json`` shipped in this package;
2. ``DENSECHANGE_REGISTRY``: registry files or URLs separated by ``os.pathsep`` or commas;
3. the ``extra`` argument (the config passes its ``registry`` key here).

A registry file is ``{"version": 1, "entries": [{...}, ...]}``; :mod:`densechange.checkpoints.entry` parses it.

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

from densechange.checkpoints.download import fetch
from densechange.checkpoints.entry import Entry, parse_registry
from densechange.checkpoints.errors import CheckpointError

ENV_VAR = "DENSECHANGE_REGISTRY"


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
