"""``manifest.jsonl``: what a prediction run has finished, so that a rerun (or a restarted group) skips it.

One JSON line per finished output (a whole scene's maps) or band part, appended when its files are
whole (:func:`~densechange.engine.runlog.append_locked`: one write under ``flock``, so processes on
several nodes append safely to a shared folder). A record holds:

- ``kind`` (``scene`` or ``band``), ``key`` (the change map, relative to the output folder) and,
  for a band, its pixel ``rows``;
- ``inputs``: each date's path, bytes and pixels;
- ``model_sha256``: of the checkpoint file; ``settings`` (what changes the outputs: windows and
  batch, precision, device type, backend, outputs written, COG) and their ``settings_digest``;
- ``outputs``: each file's path, bytes, modification time and sha256.

A rerun skips a record's work when the inputs, model and settings match and each output file is
still there with the recorded size and modification time. The sha256 is recorded, not checked
again: hashing every output of an archive on each rerun would read it all back, while size and
time already tell a file rewritten since (the sha256 is there to verify a copy with).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densechange.checkpoints.download import sha256_file
from densechange.engine.runlog import append_locked

MANIFEST = "manifest.jsonl"


def digest(settings: dict[str, Any]) -> str:
    """A short digest of ``settings`` (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def file_record(path: Path, sha256: bool = True) -> dict[str, Any]:
    """Path, bytes and modification time (and sha256) of a file."""
    stat = path.stat()
    record: dict[str, Any] = {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if sha256:
        record["sha256"] = sha256_file(path)
    return record


def unchanged(record: dict[str, Any]) -> bool:
    """Whether the file of a :func:`file_record` is still there with its size and modification time."""
    try:
        stat = Path(record["path"]).stat()
    except OSError:
        return False
    return stat.st_size == record["bytes"] and stat.st_mtime_ns == record["mtime_ns"]


@dataclass(frozen=True)
class Expected:
    """What a record must say for its work to be skipped: the inputs, the model and the settings of this run."""

    inputs: dict[str, Any]
    model_sha256: str
    settings: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "model_sha256": self.model_sha256, "settings": self.settings,
                "settings_digest": digest(self.settings)}

    def why_redo(self, record: dict[str, Any] | None) -> str | None:
        """Why the recorded work must be done again (None: skip it); a record that never was gives ``"new"``."""
        if record is None:
            return "new"
        if record.get("model_sha256") != self.model_sha256:
            return f"the model changed (sha256 {str(record.get('model_sha256'))[:12]} -> {self.model_sha256[:12]})"
        if record.get("settings_digest") != digest(self.settings):
            before = record.get("settings", {})
            changed = sorted(k for k in {*before, *self.settings} if before.get(k) != self.settings.get(k))
            return "the settings changed (" + ", ".join(f"{k}: {before.get(k)} -> {self.settings.get(k)}"
                                                         for k in changed) + ")"
        if record.get("inputs") != self.inputs:
            return "an input changed (" + ", ".join(
                f"{date}: {record.get('inputs', {}).get(date)} -> {value}" for date, value in self.inputs.items()
                if record.get("inputs", {}).get(date) != value) + ")"
        for key, output in record.get("outputs", {}).items():
            if not unchanged(output):
                return f"its {key} output {output['path']} is missing or was rewritten since"
        return None


class Manifest:
    """The manifest of an output folder: read once when a run plans, appended to as work finishes."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST

    def latest(self) -> dict[tuple, dict[str, Any]]:
        """The last record of each piece of work, by ``(key, rows)`` (rows None for a whole scene).

        A line that is not JSON (torn by a process killed while writing it) is passed over.
        """
        found: dict[tuple, dict[str, Any]] = {}
        if not self.path.exists():
            return found
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                found[record_id(record["key"], record.get("rows"))] = record
        return found

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_locked(self.path, record)


def record_id(key: str, rows: list[int] | tuple[int, int] | None) -> tuple:
    """How a piece of work is known in the manifest: its change map and, for a band, its rows."""
    return (key, tuple(rows) if rows is not None else None)
