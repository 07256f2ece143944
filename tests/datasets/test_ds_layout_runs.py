"""Each public layout trains as it unpacks: one finetuning (or pretraining) step on its tiny copy.

The change layouts are then evaluated on their test split (SECOND, which has no splits, on its
pairs), so training, validation-style full-image reading and scoring all go through the layout.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from densechange.engine.commands import dispatch

from .conftest import CHANGE, IMAGE_MASK

TRAINER = ["trainer.epochs=1", "trainer.max_steps=1", "trainer.batch_size=2", "trainer.num_workers=0",
           "trainer.device=cpu", "trainer.precision=fp32", "trainer.log_every=1"]
FINETUNE = ["data.crop_size=32", "model.encoder=random", "model.backbone=test_resnet", "model.neck_channels=16",
            "model.embed_dim=8", "model.decoder_channels=8", "val.window.size=64", "val.window.overlap=16",
            "val.window.margin=4", "val.triptychs=1", *TRAINER]
PRETRAIN = ["data.tile_size=32", "aug.size=32", "model.init=none", "model.backbone=test_resnet", "model.neck_channels=16",
            "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=8", "model.points_per_class=4", *TRAINER]


def _one_step(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1]
    assert math.isfinite(records[0]["loss"])
    return records[0]


@pytest.mark.parametrize("name", CHANGE)
def test_one_finetuning_step_and_an_evaluation_per_change_layout(make_dataset, tmp_path: Path, name: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    fx = make_dataset(name)
    run = tmp_path / "run"
    val = {"second": "null", "whu-cd-single": "null", "whu-cd": "test", "oscd": "test"}.get(name, "val")  # the release's
    extra = [f"data.val_split={val}"] + (["data.in_chans=13"] if name == "oscd" else [])
    assert dispatch(["finetune", f"data.root={fx.root}", *FINETUNE, *extra, f"run.dir={run}"]) == 0
    _one_step(run)
    assert (run / "train_pairs.txt").read_text().split("\n", 1)[1].split() == sorted(fx.splits["train"])
    capsys.readouterr()
    split = "train" if val == "null" else "test"
    assert dispatch(["evaluate", f"checkpoint={run / 'final.safetensors'}", f"data.root={fx.root}",
                     f"data.split={split}", "window.size=64", "window.overlap=16", "window.margin=4", "device=cpu",
                     "precision=fp32"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("F1=") and "IoU=" in last


@pytest.mark.parametrize("name", IMAGE_MASK)
def test_one_pretraining_step_per_image_mask_layout(make_dataset, tmp_path: Path, name: str) -> None:
    fx = make_dataset(name)
    run = tmp_path / "run"
    assert dispatch(["pretrain", f"data.root={fx.root}", *PRETRAIN, f"run.dir={run}"]) == 0
    _one_step(run)
    assert (run / "encoder.safetensors").is_file()


def test_a_described_layout_finetunes(make_dataset, tmp_path: Path) -> None:
    fx = make_dataset("levir-cd")
    for split in ("train", "val", "test"):
        for old, new in (("A", "before"), ("B", "after"), ("label", "gt")):
            (fx.root / split / old).rename(fx.root / split / new)
    layout = ["data.layout.a=before", "data.layout.b=after", "data.layout.label=gt"]
    run = tmp_path / "run"
    assert dispatch(["finetune", f"data.root={fx.root}", *FINETUNE, *layout, f"run.dir={run}"]) == 0
    _one_step(run)
    assert "a: before" in (run / "config.yaml").read_text()
