"""Files that appear whole or not at all: written under a temporary name, then renamed.

A killed run must never leave a file that looks finished (a half-written VRT or ONNX model that a
GIS then fails to open). The temporary file lies in the destination's folder, so the rename is
atomic, and gets the permissions of any new file.

Example:
    >>> write_atomically(Path("stack.vrt"), lambda tmp: tmp.write_text(document))
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["write_atomically"]


def write_atomically(out: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Call ``write`` on a temporary path beside ``out``, then rename it to ``out``; on failure remove it.

    Args:
        out: the destination; its folder is created.
        write: writes the complete file at the path it is given.
        suffix: the temporary name's ending (some writers pick the format by it, e.g. ``.vrt``).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
