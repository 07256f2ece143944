"""The bounds on what the toolkit accepts from a server, a registry file or a checkpoint header.

A file or a server can be hostile or broken: an endless body, a server that sends one byte a
second, a registry of a million entries, metadata nested ten thousand levels deep. Each bound
here turns such input into a :class:`CheckpointError` that names the bound and how to raise it,
instead of a full disk, a hung process or a traceback. The download bounds can be set per
process through the environment (and per call through :func:`densechange.checkpoints.download.fetch`).

| bound | default | environment variable |
| --- | --- | --- |
| seconds without a byte (read timeout) | 30 | ``DENSECHANGE_DOWNLOAD_TIMEOUT`` |
| seconds for one whole download | 3600 | ``DENSECHANGE_DOWNLOAD_DEADLINE`` |
| bytes of a download without a declared size | 16 GiB | ``DENSECHANGE_DOWNLOAD_MAX_BYTES`` |
| bytes of a registry file | 16 MiB | ``DENSECHANGE_REGISTRY_MAX_BYTES`` |
"""
from __future__ import annotations

import math
import os

from densechange.checkpoints.errors import CheckpointError

TIMEOUT_ENV = "DENSECHANGE_DOWNLOAD_TIMEOUT"
DEADLINE_ENV = "DENSECHANGE_DOWNLOAD_DEADLINE"
MAX_BYTES_ENV = "DENSECHANGE_DOWNLOAD_MAX_BYTES"
REGISTRY_BYTES_ENV = "DENSECHANGE_REGISTRY_MAX_BYTES"

DEFAULT_TIMEOUT = 30.0
DEFAULT_DEADLINE = 3600.0
DEFAULT_MAX_BYTES = 16 << 30
DEFAULT_REGISTRY_BYTES = 16 << 20
# A body may run this far past an entry's declared size before the download stops: enough to tell
# "a little off" from "endless" in the error, never a disk's worth.
SIZE_MARGIN = 64 << 10

MAX_JSON_DEPTH = 32  # nesting of a registry file or a checkpoint's metadata (a run config needs about 6)
METADATA_MAX_BYTES = 8 << 20  # the JSON text of a checkpoint's metadata
MAX_TEXT = 1 << 16  # characters of one string field of an entry or of metadata
MAX_BANDS = 1024  # input bands of an encoder (hyperspectral sensors have a few hundred)
MAX_CHANNELS = 1 << 14  # channels of one feature level, neck or head


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"{name}={raw!r} must be a positive number")
    return value


def read_timeout(value: float | None = None) -> float:
    """Seconds a download waits for the next byte: ``value``, else ``DENSECHANGE_DOWNLOAD_TIMEOUT``, else 30."""
    return _checked("timeout", value) if value is not None else _env_number(TIMEOUT_ENV, DEFAULT_TIMEOUT)


def deadline(value: float | None = None) -> float:
    """Seconds one download may take in all: ``value``, else ``DENSECHANGE_DOWNLOAD_DEADLINE``, else 3600."""
    return _checked("deadline", value) if value is not None else _env_number(DEADLINE_ENV, DEFAULT_DEADLINE)


def max_download_bytes() -> int:
    """Largest body accepted for a file whose size nobody declared."""
    return int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))


def max_registry_bytes() -> int:
    """Largest registry file read (local or downloaded)."""
    return int(_env_number(REGISTRY_BYTES_ENV, DEFAULT_REGISTRY_BYTES))


def _checked(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"download {name} must be a positive number of seconds, got {value!r}")
    return float(value)
