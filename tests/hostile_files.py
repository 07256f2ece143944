"""Small files that declare huge images: PNG bombs and sparse GeoTIFFs, written in a fraction of a second,
and the peak memory of a command run on them, measured in a process of its own."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

SRC = Path(__file__).resolve().parents[1] / "src"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int, channels: int = 3) -> Path:
    """A PNG of ``width x height`` zeros: a few hundred KB on disk, ``width * height * channels`` bytes decoded."""
    row = b"\0" * (1 + width * channels)  # filter byte, then the row
    rows_per_piece = max(1, (8 << 20) // len(row))
    z = zlib.compressobj(1)
    body = []
    for first in range(0, height, rows_per_piece):
        body.append(z.compress(row * min(rows_per_piece, height - first)))
    body.append(z.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(body))
                     + _chunk(b"IEND", b""))
    return path


def sparse_tif(path: Path, side: int, bands: int = 3, block: int = 2048, value: int = 1) -> Path:
    """A tiled, sparse GeoTIFF of ``side x side``: one 256² corner written, every other block absent (reads as 0)."""
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=bands, dtype="uint8", tiled=True,
                       blockxsize=block, blockysize=block, compress="deflate", sparse_ok=True, bigtiff="yes",
                       crs="EPSG:32631", transform=from_origin(500000, 6000000, 10, 10)) as dst:
        dst.write(np.full((bands, 256, 256), value, np.uint8), window=Window(0, 0, 256, 256))
    return path


_COMMAND = "import sys; from densechange.engine.commands import main; main(sys.argv[1:])"
_LAUNCHER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(r.stdout + r.stderr); "
             "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def peak_run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, int]:
    """``(exit status, output, peak resident memory in bytes)`` of ``densechange args`` run alone.

    The command runs as the only child of a launcher process, whose children's peak is then that command's.
    """
    full = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _COMMAND, *args],
                          capture_output=True, text=True, env=full, timeout=timeout)
    out, _, peak = done.stdout.rpartition("PEAK_KB ")
    return done.returncode, out + done.stderr, int(peak.strip()) * 1024
