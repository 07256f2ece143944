"""densechange.atomic, the one way outputs are written: whole or not at all, and a refused write named."""
from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path

import pytest

from densechange import atomic
from densechange.atomic import (OutputError, atomic_folder, atomic_path, output_error, scratch_path,
                               write_atomically)
from densechange.engine.errors import TOOLKIT_ERRORS


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_written_file_replaces_the_old_one_with_a_new_file_s_permissions(tmp_path):
    out = tmp_path / "sub" / "result.json"
    write_atomically(out, lambda tmp: tmp.write_text("old"))
    write_atomically(out, lambda tmp: tmp.write_text("new"))
    assert out.read_text() == "new" and listing(out.parent) == ["result.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_a_full_disk_names_the_file_and_the_cause_and_keeps_the_previous_file(tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text("previous")

    def full(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as caught:
        write_atomically(out, full)
    message = str(caught.value)
    assert str(out) in message and os.strerror(errno.ENOSPC) in message and "Free some space" in message
    assert caught.value.path == out and isinstance(caught.value, OSError) and isinstance(caught.value, TOOLKIT_ERRORS)
    assert out.read_text() == "previous" and listing(tmp_path) == ["metrics.json"]


def test_a_failing_block_leaves_nothing_and_its_error_goes_on_unchanged(tmp_path):
    out = tmp_path / "change.tif"
    with pytest.raises(ValueError, match="bad input"):
        with atomic_path(out, suffix=".tif") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("bad input")
    assert listing(tmp_path) == []


def test_temporary_names_are_unique_and_beside_the_output(tmp_path):
    out = tmp_path / "model.onnx"
    with atomic_path(out, suffix=".onnx") as first, atomic_path(out, suffix=".onnx") as second, \
            scratch_path(out, ".stream.tif") as scratch:
        assert len({first, second, scratch}) == 3
        for tmp in (first, second, scratch):
            assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.partial-") and tmp.exists()
        first.write_text("1")
        second.write_text("2")
    assert out.read_text() == "1" and listing(tmp_path) == ["model.onnx"]  # the outer block ends last
    assert not scratch.exists()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the files flushed")
def test_the_data_is_flushed_before_the_rename_and_the_folder_after_it(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "last.safetensors"
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"weights")
    assert events == [("fsync", str(tmp)), ("replace", str(out)), ("fsync", str(tmp_path))]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the files flushed")
def test_a_folder_appears_whole_with_its_files_flushed_or_not_at_all(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                        real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (events.append(("replace", str(dst))),
                                                                real_replace(src, dst))[1])
    out = tmp_path / "tiles"
    out.mkdir()  # an empty folder is replaced
    with atomic_folder(out) as tmp:
        (tmp / "A").mkdir()
        (tmp / "A" / "t_0_0.tif").write_bytes(b"tile")
        (tmp / "list.txt").write_text("t_0_0\n")
        assert listing(tmp_path) == [tmp.name, "tiles"] and tmp.name.startswith(".tiles.partial-")
    assert events == [("fsync", str(tmp / "A" / "t_0_0.tif")), ("fsync", str(tmp / "A")), ("fsync", str(tmp / "list.txt")),
                      ("fsync", str(tmp)), ("replace", str(out)), ("fsync", str(tmp_path))]
    assert listing(tmp_path) == ["tiles"] and (out / "A" / "t_0_0.tif").read_bytes() == b"tile"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    with pytest.raises(ValueError, match="unreadable input"):
        with atomic_folder(tmp_path / "other") as tmp:
            (tmp / "half.tif").write_bytes(b"half")
            raise ValueError("unreadable input")
    assert listing(tmp_path) == ["tiles"]
    with pytest.raises(OutputError, match=f"cannot write {out}"):  # a folder with files is never replaced
        with atomic_folder(out) as tmp:
            (tmp / "new.tif").write_bytes(b"new")
    assert listing(out) == ["A", "list.txt"] and listing(tmp_path) == ["tiles"]


def test_a_refused_rename_is_an_output_error_and_removes_the_temporary_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OutputError, match="permissions"):
        write_atomically(tmp_path / "a.vrt", lambda tmp: tmp.write_text("<VRTDataset/>"), suffix=".vrt")
    assert listing(tmp_path) == []


def test_a_folder_that_cannot_be_made_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=str(blocker / "out.json")):
        write_atomically(blocker / "out.json", lambda tmp: tmp.write_text("{}"))


def test_a_gdal_error_without_errno_reports_the_free_space(tmp_path, monkeypatch):
    class GdalError(Exception):
        pass

    try:
        try:
            raise GdalError("TIFFAppendToStrip:Write error at scanline 256")
        except GdalError as inner:
            raise OSError("Write failed. See previous exception for details.") from inner
    except OSError as err:
        chained = err
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    message = str(output_error(tmp_path / "c.tif", chained))
    assert message == (f"cannot write {tmp_path / 'c.tif'}: Write failed; TIFFAppendToStrip:Write error at scanline 256 "
                       "(its disk is full: 4096 bytes free). Free some space or write the output elsewhere.")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=3 << 30))
    assert "(3072 MiB free on its disk). Check the folder" in str(output_error(tmp_path / "c.tif", chained))


def test_an_output_error_survives_pickling(tmp_path):
    err = output_error(tmp_path / "x.tif", OSError(errno.EROFS, os.strerror(errno.EROFS)))
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is OutputError and str(again) == str(err) and "read-only" in str(again)
