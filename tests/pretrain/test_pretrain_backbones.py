"""SaDL pretraining over the backbone families: a CNN, ConvNeXt, EfficientNet, Swin and a plain ViT.

One matrix test: each family trains two steps; for the transformers (whose simple pyramid and
channels-last levels are the new code paths) a run stopped after one step and resumed gives
bit-identical weights (fp32), and the per-epoch probe scores their features. timm's tiny test
models and a small Swin keep it fast.
"""
from __future__ import annotations

import json

import torch

from densechange.checkpoints import load_encoder, load_file
from densechange.pretrain.train import main

RESUMED = ("test_vit", "swin_tiny_patch4_window7_224")
TINY = ["data.root=synthetic", "data.synthetic_images=4", "data.tile_size=64", "aug.size=64", "model.init=none",
        "model.neck_channels=16", "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=16",
        "model.points_per_class=4", "trainer.batch_size=2", "trainer.num_workers=0", "trainer.epochs=4",
        "trainer.device=cpu", "trainer.precision=fp32", "trainer.log_every=1"]


def test_each_family_pretrains_and_resumes_exactly(backbone_family, tmp_path):
    backbone, extra = backbone_family
    args = [*TINY, f"model.backbone={backbone}", *extra]
    probe = ["probe.every=1", "probe.data=synthetic", "probe.max_images=3", "probe.pixels_per_image=40", "probe.k=5"]
    assert main([*args, f"run.dir={tmp_path / 'straight'}", "trainer.max_steps=2",
                 *(probe if backbone in RESUMED else [])]) == 0
    if backbone in RESUMED:
        assert main([*args, f"run.dir={tmp_path / 'resumed'}", "trainer.max_steps=1"]) == 0
        assert main([*args, f"run.dir={tmp_path / 'resumed'}", "trainer.max_steps=2", "trainer.resume=auto"]) == 0
        straight, _ = load_file(tmp_path / "straight" / "last.safetensors")
        resumed, _ = load_file(tmp_path / "resumed" / "last.safetensors")
        assert straight.keys() == resumed.keys()
        assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    if backbone in RESUMED:  # the per-epoch probe scored the transformer's pyramid features
        probed = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
        assert probed and all(r["probe_pixels"] == 3 * 40 and 0 < r["probe_knn_miou"] for r in probed)
    encoder = load_encoder(tmp_path / "straight" / "encoder.safetensors")
    assert encoder.backbone_name == backbone and encoder.out_strides == [4, 8, 16, 32]
