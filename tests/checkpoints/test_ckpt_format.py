"""The safetensors checkpoint format: round trip, metadata header, atomic writes, clear errors."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file as st_save_file

from densechange.checkpoints import format as fmt
from densechange.checkpoints.format import FORMAT_VERSION, CheckpointError, load_file, read_metadata, save_file


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    return {
        "w": base,
        "view": base[:, 1:3],  # shares storage with "w" and is not contiguous
        "half": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "count": torch.tensor([7, -3], dtype=torch.int64),
        "flag": torch.tensor([True, False]),
    }


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_round_trip_is_exact_and_header_is_filled(tmp_path):
    path = tmp_path / "a.safetensors"
    tensors = _tensors()
    meta = {"kind": "encoder", "backbone": "resnet18", "nested": {"x": [1, 2.5, None]}}
    save_file(path, tensors, meta)
    loaded, got = load_file(path)
    assert sorted(loaded) == sorted(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype
        assert torch.equal(loaded[name], t), name
    assert got == {**meta, "format_version": FORMAT_VERSION, "code_version": fmt.code_version()}
    assert read_metadata(path) == got


def test_header_layout_is_readable_by_plain_safetensors(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "a.safetensors"
    save_file(path, {"x": torch.zeros(1)}, {"kind": "train-state", "step": 3})
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    assert json.loads(header["densechange"]) == {"kind": "train-state", "step": 3}
    assert header["format_version"] == "1"
    assert header["code_version"] == fmt.code_version()


def test_reserved_keys_are_rewritten_on_save(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file(path, {"x": torch.zeros(1)}, {"kind": "encoder", "format_version": 99, "code_version": "old"})
    meta = read_metadata(path)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["code_version"] == fmt.code_version()


def test_failed_rename_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_file(path, {"x": torch.ones(3)}, {"kind": "train-state", "step": 1})
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fmt.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_file(path, {"x": torch.zeros(3)}, {"kind": "train-state", "step": 2})
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["last.safetensors"]


def test_crash_while_writing_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_file(path, {"x": torch.ones(3)}, {"kind": "train-state", "step": 1})
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\":")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(fmt, "_st_save_file", half_write)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_file(path, {"x": torch.zeros(3)}, {"kind": "train-state", "step": 2})
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["last.safetensors"]
    assert torch.equal(load_file(path)[0]["x"], torch.ones(3))


def test_value_that_cannot_be_serialised_changes_nothing(tmp_path):
    path = tmp_path / "last.safetensors"
    save_file(path, {"x": torch.ones(3)}, {"kind": "encoder"})
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="'y' is a list"):
        save_file(path, {"x": torch.zeros(3), "y": [1, 2]}, {"kind": "encoder"})
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_file(path, {"x": torch.zeros(3)}, {"kind": "encoder", "bad": object()})
    with pytest.raises(CheckpointError, match="kind"):
        save_file(path, {"x": torch.zeros(3)}, {"kind": "weights"})
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["last.safetensors"]


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=f"no checkpoint file at {path}"):
        load_file(path)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        read_metadata(path)


@pytest.mark.parametrize("cut", [0.5, 0.99, 8])
def test_truncated_file_is_reported_with_its_path(tmp_path, cut):
    path = tmp_path / "full.safetensors"
    save_file(path, {"x": torch.arange(1000.0)}, {"kind": "encoder"})
    data = path.read_bytes()
    size = cut if isinstance(cut, int) else int(len(data) * cut)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:size])
    with pytest.raises(CheckpointError, match="cut.safetensors.*truncated or corrupt"):
        load_file(bad)
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_metadata(bad)


@pytest.mark.parametrize("payload", [b"", b"garbage" * 20, b"\x00" * 64, b"PK\x03\x04" + bytes(range(200))])
def test_garbage_file_is_reported_with_its_path(tmp_path, payload):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(payload)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_file(bad)


def test_foreign_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    st_save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a densechange checkpoint.*convert"):
        load_file(path)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    header = {"densechange": json.dumps({"kind": "encoder"}), "format_version": str(FORMAT_VERSION + 1)}
    st_save_file({"x": torch.zeros(2)}, str(path), metadata=header)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*upgrade"):
        read_metadata(path)


def test_written_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file(path, {"x": torch.zeros(1)}, {"kind": "encoder"})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_flipped_bit_in_tensor_data_is_detected(tmp_path):
    import torch

    from densechange.checkpoints.format import CheckpointError, load_file, save_file

    path = tmp_path / "w.safetensors"
    save_file(path, {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)}, {"kind": "encoder"})
    tensors, _ = load_file(path)
    assert torch.equal(tensors["a"], torch.arange(1000, dtype=torch.float32))
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x10  # inside the tensor data, past the header
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match the digest"):
        load_file(path)
