"""Pseudo-masks under torchrun (2 CPU processes, gloo) equal those of a single process.

With ``pseudo.tile=32`` each 64² image is 4 windows, dealt to the processes by area, so the two
processes share the windows of one image.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densechange.pretrain.pseudo.store import MaskStore
from densechange.pretrain.train import main

REPO = Path(__file__).resolve().parents[3]
ARGS = [
    "data.root=synthetic", "data.synthetic_images=8", "data.tile_size=64", "aug.size=64", "data.masks=pseudo",
    "pseudo.clusters=3", "pseudo.pixels_per_image=64", "pseudo.window=5", "pseudo.tile=32", "model.init=none",
    "model.backbone=test_resnet", "model.neck_channels=32",
    "model.proj_hidden=64", "model.proj_dim=32", "model.pred_hidden=16", "model.points_per_class=8",
    "trainer.batch_size=2", "trainer.num_workers=0", "trainer.epochs=1", "trainer.device=cpu",
    "trainer.precision=fp32",
]


@pytest.mark.slow
def test_pseudo_masks_are_the_same_on_two_processes(tmp_path):
    single = tmp_path / "single"
    assert main(ARGS + [f"run.dir={single}"]) == 0
    multi = tmp_path / "multi"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "densechange.pretrain",
           *ARGS, f"run.dir={multi}"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    names = [f"synthetic_{i:05d}" for i in range(8)]
    a, b = MaskStore(single / "pseudo_masks_g0", names), MaskStore(multi / "pseudo_masks_g0", names)
    assert a.generation == b.generation == 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({int(v) for m in a for v in np.unique(m)}) == 3  # every cluster is used
    indexes = [json.loads((multi / "pseudo_masks_g0" / f"rank0000{r}.json").read_text()) for r in (0, 1)]
    assert [len(doc["pieces"]) for doc in indexes] == [16, 16]  # 32 windows of equal area, half each
    assert (multi / "encoder.safetensors").exists()
