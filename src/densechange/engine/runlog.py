"""Plain-text run logs: one JSON object per line, appended, readable while the run goes on."""
from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

from densechange.atomic import write_atomically


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLog:
    """Append-only JSON-lines file; a resumed run keeps adding to the same file.

    Pass ``path=None`` on processes other than rank 0: the object then writes nothing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._fh = None  # opened on the first record, so a log that gets none is never created

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            if self._fh is None:
                self._fh = open(self.path, "a", buffering=1)
            self._fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def append_locked(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record to a JSON-lines file that several processes, on several machines, append to.

    The line goes in one ``write`` of an ``O_APPEND`` file under an exclusive ``flock``, so lines
    from different processes never interleave; a process killed mid-write leaves at most a torn last
    line (:func:`read_jsonl` with ``torn_tail=True`` drops it).
    """
    line = (json.dumps({k: _clean(v) for k, v in record.items()}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)  # closing releases the lock


def read_jsonl(path: str | Path, torn_tail: bool = False) -> list[dict[str, Any]]:
    """All records of a JSON-lines log.

    ``torn_tail=True`` drops a last line that is not valid JSON: what a process killed in the
    middle of writing a record leaves behind (every other line must be valid).
    """
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if torn_tail and lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return [json.loads(line) for line in lines]


def truncate_jsonl(path: str | Path, key: str, last: int) -> None:
    """Drop the records whose ``key`` is beyond ``last`` (atomically), e.g. steps undone by a resume.

    A record torn by a kill in the middle of its write is dropped too.
    """
    path = Path(path)
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path, torn_tail=True) if r.get(key, last) <= last]
    write_atomically(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in keep)))
