"""A download onto a disk that fills up: an OutputError naming the file, no file under the final name, a rerun completes."""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from densechange.atomic import OutputError
from densechange.checkpoints import transfer
from densechange.checkpoints.download import CHUNK, DownloadRequest, fetch


class FillingUp:
    """A file object whose disk is full after ``room`` bytes."""

    def __init__(self, raw, room: int) -> None:
        self.raw, self.room = raw, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.raw.write(data)

    def __enter__(self) -> "FillingUp":
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()


def test_a_full_disk_stops_the_download_with_the_file_named_and_a_rerun_completes(tmp_path, monkeypatch):
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 * CHUNK))
    dest = tmp_path / "cache" / "weights.bin"
    url = source.as_uri()

    monkeypatch.setattr(transfer, "open", lambda path, mode: FillingUp(open(path, mode), room=CHUNK), raising=False)
    with pytest.raises(OutputError) as caught:
        fetch(DownloadRequest(url, dest=dest), cache_dir=tmp_path / "cache", progress=False)
    part = dest.with_name(dest.name + ".part")
    assert str(part) in str(caught.value) and os.strerror(errno.ENOSPC) in str(caught.value)
    assert not dest.exists() and part.stat().st_size == CHUNK  # what arrived is kept for the next call

    monkeypatch.delattr(transfer, "open")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert fetch(DownloadRequest(url, dest=dest, sha256=digest), cache_dir=tmp_path / "cache", progress=False) == dest
    assert dest.read_bytes() == source.read_bytes() and not part.exists()
    assert sorted(p.name for p in Path(dest.parent).iterdir() if p.is_file()) == ["weights.bin", "weights.bin.sha256"]
