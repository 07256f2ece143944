"""Files that appear whole or not at all: written under a temporary name, then renamed.

A killed run must never leave a file that looks finished (a half-written VRT, checkpoint or change
map that a GIS then fails to open). Every output of the toolkit goes through this module:

- :func:`write_atomically` for a file written in one call;
- :func:`atomic_path` for a file filled over time (a scene streamed block by block);
- :func:`atomic_folder` for a folder of files filled over time (a dataset cut into tiles);
- :func:`scratch_path` for an intermediate file beside an output, always removed;
- :func:`publish` for the last step alone, where the caller keeps its own partial file (a download
  that resumes from ``<final>.part``).

The temporary file has a unique name in the destination's folder (``.<name>.partial-XXXXXXXX<suffix>``),
so the rename is atomic and two writers never share it. Its data is flushed to disk before the
rename and the folder after it, so a power cut leaves the previous file or the new one. A failure
removes it. A write that the operating system refuses (full disk, no permission, read-only
filesystem) becomes an :class:`OutputError` that names the file and the cause.

Example:
    >>> write_atomically(Path("stack.vrt"), lambda tmp: tmp.write_text(document))
    >>> with atomic_path(Path("change.tif"), suffix=".tif") as tmp:
    ...     fill(tmp)                       # change.tif appears only when the block ends normally
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["OutputError", "output_error", "write_atomically", "atomic_path", "atomic_folder", "scratch_path", "publish",
           "new_file_mode"]

_HINTS = {
    errno.ENOSPC: "Free some space or write the output elsewhere",
    errno.EDQUOT: "Free some space or write the output elsewhere",
    errno.EACCES: "Check the folder's permissions or write the output elsewhere",
    errno.EPERM: "Check the folder's permissions or write the output elsewhere",
    errno.EROFS: "The filesystem is read-only: write the output elsewhere",
}
_GENERIC_HINT = "Check the folder or write the output elsewhere"
FULL_BELOW = 1 << 20  # bytes: a disk with less room left cannot take one more block of a raster


class OutputError(OSError):
    """An output file could not be written (full disk, no permission, read-only filesystem).

    It subclasses ``OSError`` so that callers which already catch operating-system errors keep
    working; the command-line wrapper turns it into one paragraph.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)  # one argument, so that it pickles (an error in a worker process)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


def _causes(err: BaseException) -> list[str]:
    """The messages of ``err`` and the errors it was raised from (GDAL chains its reasons)."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = current.strerror if isinstance(current, OSError) and current.strerror else str(current)
        text = " ".join(text.split()).replace(" See previous exception for details.", "").rstrip(".")
        if text and text not in found:
            found.append(text)
        if isinstance(current, OSError) and current.strerror:
            break  # the system's own reason: what it was translated from adds nothing
        current = current.__cause__ or current.__context__
    return found


def _free_bytes(path: Path) -> int | None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def output_error(path: Path, err: BaseException) -> OutputError:
    """An :class:`OutputError` for ``err`` while writing ``path``: the file, the cause and what to do.

    Errors without an errno (GDAL's) carry no cause the toolkit can name for sure, so the message
    adds the free space on the file's disk, which tells a full disk from anything else.
    """
    if isinstance(err, OutputError):
        return err
    path = Path(path)
    code = err.errno if isinstance(err, OSError) else None
    causes = _causes(err) or [type(err).__name__]
    message = f"cannot write {path}: {'; '.join(causes)}"
    if code is None:
        free = _free_bytes(path)
        if free is not None and free < FULL_BELOW:
            code = errno.ENOSPC
            message += f" (its disk is full: {free} bytes free)"
        elif free is not None:
            message += f" ({free / 2**20:.0f} MiB free on its disk)"
    message += f". {_HINTS.get(code, _GENERIC_HINT)}."
    return OutputError(message, path)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def new_file_mode(mode: int = 0o666) -> int:
    """``mode`` less the umask: the permissions ``open()`` gives a new file (``mkstemp`` makes it private to the user)."""
    return mode & ~_umask()


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file's data (or a folder's entries, best effort: not every system allows it) to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _temporary(out: Path, suffix: str) -> Path:
    """A new, empty file with a unique name beside ``out``; its folder is created."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.partial-", suffix=suffix)
    except OSError as err:
        raise output_error(out, err) from err
    os.close(fd)
    return Path(name)


def publish(tmp: Path, out: Path, mode: int = 0o666) -> None:
    """Move a complete file into place: flush it, give it a new file's permissions, rename, flush the folder.

    The permissions are ``mode`` less the umask, as ``open()`` gives a new file (a cache passes
    0o644, so no group ever writes it). On failure ``tmp`` is left as it is (the caller decides
    whether it is worth keeping) and an :class:`OutputError` names ``out``.
    """
    tmp, out = Path(tmp), Path(out)
    try:
        _fsync(tmp)  # the data is on disk before the name points at it
        os.chmod(tmp, new_file_mode(mode))
        os.replace(tmp, out)
    except OSError as err:
        raise output_error(out, err) from err
    _fsync(out.parent, directory=True)  # the rename itself survives a power cut


@contextlib.contextmanager
def atomic_path(out: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``out`` to fill; ``out`` appears when the block ends normally.

    If the block raises, the temporary file is removed and the exception goes on unchanged (the
    block's own errors are the caller's to describe: they may come from reading an input).

    Args:
        out: the destination; its folder is created.
        suffix: the temporary name's ending (some writers pick the format by it, e.g. ``.vrt``).
    """
    out = Path(out)
    tmp = _temporary(out, suffix)
    try:
        yield tmp
        publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` to fill; it becomes ``out`` when the block ends normally.

    ``out`` must not exist or be an empty folder. Before the rename every file and folder in it is
    flushed to disk, so the folder appears with its files. If the block raises, the temporary folder
    and all it holds are removed and the exception goes on unchanged.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    except OSError as err:
        raise output_error(out, err) from err
    try:
        yield tmp
        try:
            for path in [*sorted(tmp.rglob("*"), key=lambda p: (-len(p.parts), str(p))), tmp]:  # contents first
                _fsync(path, directory=path.is_dir())
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private to the user
            os.replace(tmp, out)  # replaces an empty folder, fails on a folder with files
        except OSError as err:
            raise output_error(out, err) from err
        _fsync(out.parent, directory=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_path(beside: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside the output ``beside`` for an intermediate file; always removed."""
    tmp = _temporary(Path(beside), suffix)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(out: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Call ``write`` on a temporary path beside ``out``, then rename it to ``out``; on failure remove it.

    An ``OSError`` raised by ``write`` becomes an :class:`OutputError` naming ``out``.

    Args:
        out: the destination; its folder is created.
        write: writes the complete file at the path it is given.
        suffix: the temporary name's ending (some writers pick the format by it, e.g. ``.vrt``).
    """
    with atomic_path(out, suffix) as tmp:
        try:
            write(tmp)
        except OutputError:
            raise
        except OSError as err:
            raise output_error(out, err) from err
