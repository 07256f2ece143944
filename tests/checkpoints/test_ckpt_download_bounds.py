"""Downloads that cannot be fed garbage, each case against a real server on 127.0.0.1 (tests.fileserver).

Registry URLs with a port, bodies past the declared size, endless registry files, a server that
drips or stalls, redirects to other schemes, a file that changes between a dropped connection and
the resume, and the mode of a cached file.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from densechange.checkpoints import CheckpointError
from densechange.checkpoints.download import DownloadRequest, fetch, fetch_entry, url_cache_path
from densechange.checkpoints.entry import parse_entry
from densechange.checkpoints.limits import SIZE_MARGIN
from densechange.checkpoints.registry import find_entry, split_sources
from tests.fileserver import FileServer


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _registry(name: str, url: str = "https://example.org/w-0123abcd.pth") -> bytes:
    entry = {"name": name, "url": url, "sha256_prefix": "0123abcd", "backbone": "resnet18", "in_chans": 3,
             "mean": [0.5] * 3, "std": [0.5] * 3, "importer": "torchvision"}
    return json.dumps({"version": 1, "entries": [entry]}).encode()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_a_registry_url_with_a_port_is_one_source(server, tmp_path, monkeypatch):
    server.files["reg.json"] = _registry("ported")
    url = server.url("reg.json")
    assert split_sources(f"{url}:/home/me/a.json,{url}") == [url, "/home/me/a.json", url]
    assert split_sources("http://me:pw@127.0.0.1:8000/r.json?v=1:file:///r.json") == [
        "http://me:pw@127.0.0.1:8000/r.json?v=1", "file:///r.json"]
    monkeypatch.setenv("DENSECHANGE_REGISTRY", url)
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path))
    assert find_entry("ported").origin == url
    assert server.ranges("reg.json") == [None]


def test_an_endless_body_stops_at_the_declared_size(server, tmp_path):
    server.endless.add("big.pth")
    entry = parse_entry({"name": "big", "url": server.url("big.pth"), "sha256": "0" * 64, "size": 1000,
                         "backbone": "resnet18", "in_chans": 3}, "test")
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=f"sends more than {1000 + SIZE_MARGIN:,} bytes, though its size is "
                                              "declared as 1,000.*partial file deleted"):
        fetch_entry(entry, cache_dir=tmp_path, progress=False)
    assert time.monotonic() - started < 10
    assert _files(tmp_path) == []


def test_a_content_length_past_the_bound_is_refused_before_reading(server, tmp_path):
    server.files["w.pth"] = b"x" * 5000
    with pytest.raises(CheckpointError, match="sends more than 1,000 bytes.*raise SOME_KEY"):
        fetch(DownloadRequest(server.url("w.pth"), max_bytes=1000, max_bytes_key="SOME_KEY"), cache_dir=tmp_path,
              progress=False)
    assert _files(tmp_path) == []


def test_a_remote_registry_is_read_within_its_bound(server, tmp_path, monkeypatch):
    server.endless.add("endless.json")
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DENSECHANGE_REGISTRY_MAX_BYTES", "100000")
    with pytest.raises(CheckpointError, match="more than 100,000 bytes.*DENSECHANGE_REGISTRY_MAX_BYTES"):
        find_entry("x", extra=[server.url("endless.json")])
    local = tmp_path / "big.json"
    local.write_bytes(_registry("local") + b" " * 100_000)
    with pytest.raises(CheckpointError, match=r"big.json is 100,\d{3} bytes, more than the 100,000 accepted; raise "
                                              "DENSECHANGE_REGISTRY_MAX_BYTES"):
        find_entry("local", extra=[str(local)])
    monkeypatch.setenv("DENSECHANGE_REGISTRY_MAX_BYTES", "200000")
    assert find_entry("local", extra=[str(local)]) is not None


def test_a_server_that_drips_meets_the_deadline(server, tmp_path):
    server.files["drip.pth"] = b"y" * 10_000
    server.drip["drip.pth"] = 0.02
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="did not finish within its deadline of 1 s.*DENSECHANGE_DOWNLOAD_DEADLINE"):
        fetch(server.url("drip.pth"), cache_dir=tmp_path, progress=False, deadline=1.0)
    assert time.monotonic() - started < 5


def test_a_silent_server_meets_the_read_timeout(server, tmp_path, monkeypatch):
    server.files["stall.pth"] = b"z" * 1000
    server.stall["stall.pth"] = 3.0
    monkeypatch.setenv("DENSECHANGE_DOWNLOAD_TIMEOUT", "0.3")
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"no byte arrived for 0.3 s .*read timeout; raise DENSECHANGE_DOWNLOAD_TIMEOUT"):
        fetch(server.url("stall.pth"), cache_dir=tmp_path, progress=False, retries=0)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_bad_timeout_settings_are_named(tmp_path, monkeypatch, value):
    monkeypatch.setenv("DENSECHANGE_DOWNLOAD_DEADLINE", value)
    with pytest.raises(CheckpointError, match="DENSECHANGE_DOWNLOAD_DEADLINE=.* must be a positive number"):
        fetch("http://127.0.0.1:9/x.pth", cache_dir=tmp_path, progress=False)


def test_redirects_only_to_http_and_https(server, tmp_path):
    data = b"weights" * 100
    server.files["real.pth"] = data
    server.redirect["moved.pth"] = server.url("real.pth")
    assert fetch(DownloadRequest(server.url("moved.pth"), sha256=_sha(data)), cache_dir=tmp_path,
                 progress=False).read_bytes() == data
    secret = tmp_path / "secret.pth"
    secret.write_bytes(b"private")
    for target in ("ftp://127.0.0.1/w.pth", secret.as_uri()):
        server.redirect["evil.pth"] = target
        with pytest.raises(CheckpointError, match=f"redirects to {target}; only redirects to http:// and https://"):
            fetch(server.url("evil.pth"), cache_dir=tmp_path / "evil", progress=False)
    assert _files(tmp_path / "evil") == []
    with pytest.raises(CheckpointError, match="downloads are http://, https://, file:// or hf:// URLs, not ftp://"):
        fetch("ftp://127.0.0.1/w.pth", cache_dir=tmp_path, progress=False)


def _cut_then_change(server: FileServer, tmp_path: Path, name: str) -> tuple[bytes, Path]:
    """Serve ``old``, cut it halfway, then replace it with ``new`` of the same length; returns ``new``."""
    old, new = bytes(range(256)) * 2000, bytes(reversed(range(256))) * 2000
    server.files[name] = old
    server.cut_after[name] = len(old) // 2
    url = server.url(name)
    with pytest.raises(CheckpointError, match="Run again to resume"):
        fetch(url, cache_dir=tmp_path, progress=False, retries=0)
    target = url_cache_path(url, tmp_path)
    assert target.with_name(target.name + ".part").stat().st_size == len(old) // 2
    server.files[name] = new
    return new, target


def test_a_file_changed_before_the_resume_comes_back_whole(server, tmp_path):
    new, target = _cut_then_change(server, tmp_path, "moving.pth")
    assert fetch(server.url("moving.pth"), cache_dir=tmp_path, progress=False, retries=0).read_bytes() == new
    etag = f'"{_sha(bytes(range(256)) * 2000)[:16]}"'
    assert server.ranges("moving.pth") == [None, f"bytes={len(new) // 2}-"]
    assert server.if_ranges("moving.pth") == [None, etag]  # the server saw another version and sent it whole
    assert _files(tmp_path) == ["moving.pth", "moving.pth.sha256"]


def test_without_a_validator_a_partial_file_is_restarted(server, tmp_path):
    server.no_validators.add("plain.pth")
    new, target = _cut_then_change(server, tmp_path, "plain.pth")
    assert fetch(server.url("plain.pth"), cache_dir=tmp_path, progress=False, retries=0).read_bytes() == new
    assert server.ranges("plain.pth") == [None, None]


def test_a_server_ignoring_if_range_is_caught_by_the_etag(server, tmp_path):
    server.ignore_if_range.add("liar.pth")
    new, target = _cut_then_change(server, tmp_path, "liar.pth")
    assert fetch(server.url("liar.pth"), cache_dir=tmp_path, progress=False, retries=1).read_bytes() == new
    assert server.ranges("liar.pth") == [None, f"bytes={len(new) // 2}-", None]


def test_a_cached_file_gets_a_fresh_mode_not_the_source_s(tmp_path):
    source = tmp_path / "private.pth"
    source.write_bytes(b"w" * 4096)
    source.chmod(0o600)
    old = os.umask(0o002)
    try:
        path = fetch(source.as_uri(), cache_dir=tmp_path / "cache", progress=False)
    finally:
        os.umask(old)
    assert path.read_bytes() == source.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.with_name(path.name + ".sha256").stat().st_mode & 0o777 == 0o644
