"""``densechange probe`` end to end: a checkpoint file, bad input, and real tiles with empty masks."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.checkpoints import load_encoder, save_encoder

from densechange.models import Encoder
from densechange.datasets import ImageMaskDataset, ImageMaskOptions, SyntheticImageMaskDataset
from densechange.engine.errors import ConfigError
from densechange.pretrain.probe.cli import main
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import extract_pixels
from densechange.pretrain.probe.score import probe_encoder

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SUMMARY = re.compile(r"^knn_miou=(\d\.\d{4}) kmeans_nmi=(\d\.\d{4})$")


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    save_encoder(path, Encoder("test_resnet", neck_channels=32), mean=[0.4] * 3, std=[0.2] * 3)
    return path


def test_probe_command_on_a_checkpoint_file(encoder_file):
    """The suite's one ``densechange probe`` in a process of its own, through the console script."""
    args = [f"encoder={encoder_file}", "data.root=synthetic", "data.synthetic_images=5", "data.synthetic_size=64",
            "probe.pixels_per_image=40", "probe.folds=5", "probe.k=5", "seed=3"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the threads of the library call below
    done = subprocess.run([str(Path(sys.executable).parent / "densechange"), "probe", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, last
    # The command is the library call with the checkpoint's own normalisation, and is deterministic.
    expected = probe_encoder(load_encoder(encoder_file), SyntheticImageMaskDataset(5, size=64, seed=3), num_classes=2,
                             mean=[0.4] * 3, std=[0.2] * 3, settings=ProbeConfig(pixels_per_image=40, k=5), seed=3)
    assert last == expected.summary()
    assert expected.pixels == 5 * 40 and expected.images == 5


@pytest.mark.parametrize("args, message", [
    (["encoder=random", "data.root=synthetic", "probe.kk=3"], "unknown config key 'probe.kk'"),
    (["data.root=synthetic"], "'encoder' is required"),
    (["encoder=random"], "'data.root' is required"),
    (["encoder=random", "data.root=synthetic", "device=tpu"], "valid values: auto, cpu, cuda"),
])
def test_bad_input_names_the_problem(args, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        main(args)


def test_real_tiles_with_empty_masks(capsys):
    root = SHARED / "spacenet-rio"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    torch.manual_seed(0)
    encoder = Encoder("test_resnet", neck_channels=32)
    ds = ImageMaskDataset(root, None, ImageMaskOptions(crop_size=96, seed=0, one_crop_per_image=True))
    px = extract_pixels(encoder, ds, mean=[0.5] * 3, std=[0.5] * 3,
                        settings=ProbeConfig(pixels_per_image=30, max_pixels=None, batch_size=8))
    empty = [i for i in range(len(ds)) if int(ds[i]["mask"].max()) <= 0]
    assert len(empty) >= 5  # img58..62: empty masks (img58 is all no-data)
    for i in empty:  # they still give their background pixels
        assert (px.images == i).sum() == 30 and (px.labels[px.images == i] == 0).all()
    assert np.unique(px.images).size == len(ds) == 15
    # The command on the same folder: whole images of two sizes (406x438 and, from img59, 406x439).
    assert main(["encoder=random", f"data.root={root}", "probe.pixels_per_image=30", "model.backbone=test_resnet",
                 "model.neck_channels=32", "data.max_images=10", "probe.batch_size=4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]) and "10 images, 300 pixels" in out[0]
