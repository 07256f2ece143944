"""Downloads against a real local HTTP server: progress, resume, faults, hashes, concurrency.

The server (`tests.fileserver.FileServer`) supports Range requests, validators and switchable faults
per served name; bounds, redirects and validated resumes are in test_ckpt_download_bounds.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import CheckpointError, build_encoder, save_file, transfer
from densechange.checkpoints.download import (DownloadRequest, entry_cache_path, fetch, fetch_entry, resolve_url,
                                              url_cache_path)
from densechange.checkpoints.entry import parse_entry
from tests.fileserver import FileServer

REPO = Path(__file__).resolve().parents[2]


def _checkpoint_bytes(tmp_path: Path, n: int = 400_000, seed: int = 0) -> bytes:
    """A generated checkpoint file (~1.6 MB for the default n)."""
    g = torch.Generator().manual_seed(seed)
    path = tmp_path / f"gen{seed}.safetensors"
    save_file(path, {"w": torch.randn(n, generator=g)}, {"kind": "encoder", "seed": seed})
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files_under(folder: Path) -> list[Path]:
    """Every file in the cache except the lock folder."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".locks" not in p.parts)


def _entry(url: str, data: bytes, name: str = "tiny", **over):
    raw = {"name": name, "url": url, "sha256": _sha(data), "backbone": "resnet18", "in_chans": 3,
           "mean": [0.5] * 3, "std": [0.5] * 3, "source": "generated", "licence": "MIT",
           "importer": "densechange", **over}
    return parse_entry(raw, "test")


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def test_download_shows_progress_and_is_cached(tmp_path, server, capsys):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    url = server.url("enc.safetensors")
    path = fetch(DownloadRequest(url, sha256=_sha(data)), cache_dir=tmp_path / "cache")
    assert path == url_cache_path(url, tmp_path / "cache")
    assert path.read_bytes() == data
    err = capsys.readouterr().err
    assert "100%" in err and "enc.safetensors" in err
    assert fetch(DownloadRequest(url, sha256=_sha(data)), cache_dir=tmp_path / "cache") == path
    assert server.ranges("enc.safetensors") == [None]  # the second call was served from the cache
    assert _files_under(tmp_path / "cache") == [path, path.with_name(path.name + ".sha256")]


def test_cache_paths_cannot_collide(tmp_path):
    a = _entry("https://x.org/a/model.pth", b"a", name="one")
    b = _entry("https://y.org/b/model.pth", b"b", name="two")
    c = _entry("https://y.org/b/model.pth", b"c", name="two")
    paths = {entry_cache_path(e, tmp_path) for e in (a, b, c)}
    assert len(paths) == 3
    assert entry_cache_path(a, tmp_path) == tmp_path / "one" / _sha(b"a") / "model.pth"
    assert url_cache_path("https://x.org/m.pth", tmp_path) != url_cache_path("https://y.org/m.pth", tmp_path)
    prefix = _entry("https://x.org/m-abcdef12.pth", b"", name="p", sha256=None, sha256_prefix="abcdef12")
    assert entry_cache_path(prefix, tmp_path) == tmp_path / "p" / "abcdef12" / "m-abcdef12.pth"


def test_resume_after_a_cut_uses_a_range_request(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    half = len(data) // 2
    server.cut_after["enc.safetensors"] = half
    url = server.url("enc.safetensors")
    with pytest.raises(CheckpointError, match=f"after {half} of {len(data)} bytes.*Run again to resume"):
        fetch(DownloadRequest(url, sha256=_sha(data)), cache_dir=tmp_path / "cache", retries=0, progress=False)
    target = url_cache_path(url, tmp_path / "cache")
    part = target.with_name(target.name + ".part")
    assert not target.exists() and part.stat().st_size == half
    path = fetch(DownloadRequest(url, sha256=_sha(data)), cache_dir=tmp_path / "cache", retries=0, progress=False)
    assert path.read_bytes() == data and not part.exists()
    assert server.ranges("enc.safetensors") == [None, f"bytes={half}-"]


def test_a_cut_is_resumed_within_one_call(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    server.cut_after["enc.safetensors"] = 100_000
    path = fetch(DownloadRequest(server.url("enc.safetensors"), sha256=_sha(data)), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == data
    assert server.ranges("enc.safetensors") == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    server.cut_after["enc.safetensors"] = 300_000
    server.ignore_range.add("enc.safetensors")
    path = fetch(DownloadRequest(server.url("enc.safetensors"), sha256=_sha(data)), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == data
    assert server.ranges("enc.safetensors") == [None, "bytes=300000-"]


def test_not_found(tmp_path, server):
    with pytest.raises(CheckpointError, match=r"missing\.pth was not found \(HTTP 404\)"):
        fetch(server.url("missing.pth"), cache_dir=tmp_path / "cache", progress=False)
    assert _files_under(tmp_path / "cache") == []


def test_hash_mismatch_names_both_hashes_and_leaves_nothing(tmp_path, server):
    expected, served = _checkpoint_bytes(tmp_path, seed=1), _checkpoint_bytes(tmp_path, seed=2)
    server.files["enc.safetensors"] = served
    entry = _entry(server.url("enc.safetensors"), expected)
    with pytest.raises(CheckpointError, match=f"expected {_sha(expected)}, got {_sha(served)}"):
        fetch_entry(entry, cache_dir=tmp_path / "cache", progress=False)
    assert _files_under(tmp_path / "cache") == []


def test_prefix_entry_is_checked_against_its_prefix(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    prefix = _sha(data)[:8]
    name = f"enc-{prefix}.safetensors"
    server.files[name] = data
    entry = _entry(server.url(name), data, sha256=None, sha256_prefix=prefix)
    assert fetch_entry(entry, cache_dir=tmp_path, progress=False).read_bytes() == data
    wrong = _entry(server.url(name), data, name="wrong", sha256=None, sha256_prefix=prefix)
    server.files[name] = data[:-1] + b"x"
    with pytest.raises(CheckpointError, match=f"expected {prefix}\\.\\.\\."):
        fetch_entry(wrong, cache_dir=tmp_path, progress=False)


def test_truncated_body_with_lying_content_length(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    server.lie["enc.safetensors"] = 5000
    message = f"truncated body \\(Content-Length announced {len(data) + 5000}, received {len(data)}\\)"
    with pytest.raises(CheckpointError, match=message):
        fetch(DownloadRequest(server.url("enc.safetensors"), sha256=_sha(data)), cache_dir=tmp_path / "cache",
              retries=0, progress=False)
    assert not url_cache_path(server.url("enc.safetensors"), tmp_path / "cache").exists()


def test_refused_connection_says_where_to_put_the_file(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/enc.pth"
    target = url_cache_path(url, tmp_path)
    with pytest.raises(CheckpointError, match=f"refused.*copy it to {target}"):
        fetch(url, cache_dir=tmp_path, progress=False)


def test_offline_machine_gets_the_manual_install_path(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(transfer, "urlopen", no_dns)
    entry = _entry("https://example.org/weights/enc.safetensors", b"x")
    target = entry_cache_path(entry, tmp_path)
    message = f"looks offline.*download https://example.org/weights/enc.safetensors.*copy it to {target}"
    with pytest.raises(CheckpointError, match=message):
        fetch_entry(entry, cache_dir=tmp_path, progress=False)


def test_hand_placed_file_is_verified_on_first_use(tmp_path, server):
    data = _checkpoint_bytes(tmp_path)
    entry = _entry(server.url("never-served.safetensors"), data)
    target = entry_cache_path(entry, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    assert fetch_entry(entry, cache_dir=tmp_path, progress=False) == target
    assert server.requests == []
    target.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        fetch_entry(entry, cache_dir=tmp_path, progress=False)
    assert not target.exists()


def test_file_and_hf_urls(tmp_path):
    data = _checkpoint_bytes(tmp_path)
    src = tmp_path / "local.safetensors"
    src.write_bytes(data)
    path = fetch(DownloadRequest(src.as_uri(), sha256=_sha(data)), cache_dir=tmp_path / "cache", progress=False)
    assert path.read_bytes() == data and path != src
    with pytest.raises(CheckpointError, match="no such file"):
        fetch((tmp_path / "absent.pth").as_uri(), cache_dir=tmp_path / "cache", progress=False)
    assert resolve_url("hf://org/repo/sub/w.pth") == "https://huggingface.co/org/repo/resolve/main/sub/w.pth"
    assert resolve_url("hf://org/repo@abc123/w.pth") == "https://huggingface.co/org/repo/resolve/abc123/w.pth"
    with pytest.raises(CheckpointError, match="hf://org/repo/path"):
        resolve_url("hf://org/w.pth")


def test_only_local_rank_zero_downloads(tmp_path, server, monkeypatch):
    import torch.distributed as dist

    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    entry = _entry(server.url("enc.safetensors"), data)
    barriers = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 4)
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: barriers.append(os.environ["LOCAL_RANK"]))
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(CheckpointError, match="local rank 0 could not download"):
        fetch_entry(entry, cache_dir=tmp_path, progress=False)  # rank 0 has not fetched it
    assert server.requests == []
    monkeypatch.setenv("LOCAL_RANK", "0")
    path = fetch_entry(entry, cache_dir=tmp_path, progress=False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert fetch_entry(entry, cache_dir=tmp_path, progress=False) == path
    assert barriers == ["1", "0", "3"]
    assert server.ranges("enc.safetensors") == [None]


_WORKER = """
import sys
from densechange.checkpoints.download import fetch_entry
from densechange.checkpoints.registry import get_entry
print(fetch_entry(get_entry("tiny"), cache_dir=sys.argv[1], progress=False))
"""


@pytest.mark.slow
def test_two_processes_share_one_verified_download(tmp_path, server):
    data = _checkpoint_bytes(tmp_path, n=600_000)
    server.files["enc.safetensors"] = data
    server.slow["enc.safetensors"] = 0.02  # keep the first download running while the second starts
    registry = tmp_path / "reg.json"
    entry = {"name": "tiny", "url": server.url("enc.safetensors"), "sha256": _sha(data), "backbone": "resnet18",
             "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3, "source": "generated", "licence": "MIT",
             "importer": "densechange"}
    registry.write_text(json.dumps({"version": 1, "entries": [entry]}))
    env = {**os.environ, "DENSECHANGE_REGISTRY": str(registry), "PYTHONPATH": str(REPO / "src")}
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(cache)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == data
    assert server.ranges("enc.safetensors") == [None]  # the second process waited and reused it
    assert [p.name for p in _files_under(cache)] == ["enc.safetensors", "enc.safetensors.sha256"]


def test_build_encoder_from_registry_name_and_url(tmp_path, server, monkeypatch):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050")
    pth = tmp_path / "mnv3.pth"
    torch.save(model.state_dict(), pth)
    data = pth.read_bytes()
    server.files["mnv3.pth"] = data
    registry = tmp_path / "reg.json"
    entry = {"name": "mnv3_test", "url": server.url("mnv3.pth"), "sha256": _sha(data),
             "backbone": "mobilenetv3_small_050", "in_chans": 3, "bands": ["R", "G", "B"],
             "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "source": "generated", "licence": "MIT",
             "importer": "timm", "neck_channels": 16}
    registry.write_text(json.dumps({"version": 1, "entries": [entry]}))
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path / "cache"))
    encoder, norm = build_encoder("mnv3_test", registry=[str(registry)])
    assert norm == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert encoder.backbone_name == "mobilenetv3_small_050" and encoder.out_channels == 16
    ref = model.state_dict()
    got = encoder.backbone.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in got)
    by_url, url_norm = build_encoder(server.url("mnv3.pth"), backbone="mobilenetv3_small_050")
    assert torch.equal(by_url.backbone.conv_stem.weight, model.conv_stem.weight)
    assert server.ranges("mnv3.pth") == [None, None]  # one per cache location (entry, URL)


def test_cli_download_prints_the_path_last(tmp_path, server, monkeypatch, capsys, cli):
    data = _checkpoint_bytes(tmp_path)
    server.files["enc.safetensors"] = data
    registry = tmp_path / "reg.json"
    entry = {"name": "cli_tiny", "url": server.url("enc.safetensors"), "sha256": _sha(data), "backbone": "resnet18",
             "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3, "source": "generated", "licence": "MIT",
             "importer": "densechange"}
    registry.write_text(json.dumps({"version": 1, "entries": [entry]}))
    monkeypatch.setenv("DENSECHANGE_REGISTRY", str(registry))
    assert cli(["weights", "download", "cli_tiny", f"cache={tmp_path / 'cache'}"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(last).read_bytes() == data
    assert Path(last).is_relative_to(tmp_path / "cache" / "cli_tiny")
    assert cli(["weights", "verify", last, "name=cli_tiny"]) == 0
    assert capsys.readouterr().out.startswith(f"OK sha256 {_sha(data)}")
    assert cli(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cli_tiny" in listing and "resnet18_imagenet" in listing
    assert cli(["weights", "download", "no_such_entry"]) == 2
    assert "no registry entry 'no_such_entry'" in capsys.readouterr().err


def test_remote_registry_is_refreshed_and_cached(tmp_path, server, monkeypatch):
    from densechange.checkpoints.registry import find_entry

    def registry_bytes(name: str) -> bytes:
        entry = {"name": name, "url": "https://example.org/w-0123abcd.pth", "sha256_prefix": "0123abcd",
                 "backbone": "resnet18", "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
                 "source": "https://example.org", "licence": "MIT", "importer": "torchvision"}
        return json.dumps({"version": 1, "entries": [entry]}).encode()

    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path / "cache"))
    url = server.url("team.json")
    server.files["team.json"] = registry_bytes("team_v1")
    assert find_entry("team_v1", extra=[url]).origin == url
    server.files["team.json"] = registry_bytes("team_v2")
    assert find_entry("team_v1", extra=[url]) is None  # every lookup reads the current file
    assert find_entry("team_v2", extra=[url]) is not None
    del server.files["team.json"]
    with pytest.warns(UserWarning, match="using the cached copy"):
        assert find_entry("team_v2", extra=[url]) is not None


def test_imagenet_source_offline_says_where_the_file_goes(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(transfer, "urlopen", no_dns)
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path))
    target = tmp_path / "resnet18_imagenet" / "f37072fd" / "resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError, match=f"download.pytorch.org.*looks offline.*copy it to {target}"):
        build_encoder("imagenet", backbone="resnet18")
