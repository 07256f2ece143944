"""A disk that refuses a prediction's output: one paragraph naming the file and the cause, exit 2, nothing left."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
import rasterio.shutil
import torch
from rasterio.transform import from_origin

from densechange import atomic
from densechange.models import Encoder
from densechange.engine.cli import BUG_LINE, run_cli
from densechange.engine.commands import dispatch
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.inference import streaming


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    """A tiny change model and a georeferenced 150 x 170 pair of dates."""
    folder = tmp_path_factory.mktemp("scene")
    torch.manual_seed(0)
    model = ChangeModel(Encoder("resnet18", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3, heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()
    save_change_model(folder / "model.safetensors", model)
    rng = np.random.default_rng(0)
    paths = {"checkpoint": folder / "model.safetensors"}
    for date in ("a", "b"):
        paths[date] = folder / f"{date}.tif"
        with rasterio.open(paths[date], "w", driver="GTiff", height=150, width=170, count=3, dtype="uint8",
                           crs="EPSG:32633", transform=from_origin(500000.0, 4650000.0, 0.5, 0.5)) as dst:
            dst.write((rng.random((3, 150, 170)) * 255).astype(np.uint8))
    return paths


def predict(scene: dict[str, Path], out: Path, *extra: str) -> int:
    """``densechange predict`` in this process under the command-line wrapper; its exit status."""
    argv = ["predict", f"checkpoint={scene['checkpoint']}", f"a={scene['a']}", f"b={scene['b']}",
            f"out={out}", "window.size=64", "window.overlap=16", "window.margin=4", "device=cpu", "progress=false",
            *extra]
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: dispatch(argv))
    return stop.value.code


def one_paragraph(err: str) -> str:
    """The wrapper's paragraph, checked to be all there is: ``error: ...`` and its indented continuation lines."""
    lines = err.rstrip("\n").split("\n")
    assert lines[0].startswith("error: ") and all(line.startswith("  ") for line in lines[1:]), err
    assert "Traceback" not in err and BUG_LINE not in err
    return " ".join(line.strip() for line in lines)


def test_a_full_disk_while_predicting_is_one_paragraph_exit_2_and_leaves_nothing(scene, tmp_path, monkeypatch, capsys):
    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", disk_full)
    out = tmp_path / "out" / "change.tif"
    assert predict(scene, out, "probability=true") == 2
    message = one_paragraph(capsys.readouterr().err)
    assert str(out) in message and "No space left on device" in message and "Free some space" in message
    assert list(out.parent.rglob("*")) == []  # no temporary file and no output, the probability map's included


def test_a_gdal_error_while_converting_to_cog_is_named_with_the_free_space(scene, tmp_path, monkeypatch, capsys):
    """GDAL's own errors are not OSError; on a full disk the message says so from the free space."""
    real_copy = rasterio.shutil.copy
    usage = shutil.disk_usage(tmp_path)

    def copy_to_full_disk(src, dst, **options):
        if Path(dst).name.startswith(".change.tif."):
            return real_copy(src, dst, **options)  # the change map is converted before the disk fills up
        monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage._replace(free=0))
        raise streaming.CPLE_BaseError(3, 1, "TIFFWriteDirectorySec:IO error writing directory")

    monkeypatch.setattr(rasterio.shutil, "copy", copy_to_full_disk)
    out = tmp_path / "out" / "change.tif"
    prob = tmp_path / "out" / "probability.tif"
    assert predict(scene, out, "cog=true", f"probability={prob}") == 2
    message = one_paragraph(capsys.readouterr().err)
    assert message.startswith(f"error: cannot write {prob}: TIFFWriteDirectorySec:IO error writing directory")
    assert "its disk is full: 0 bytes free" in message and "Free some space" in message
    assert list(out.parent.rglob("*")) == []  # the converted change map went too: a scene's outputs come all or none
