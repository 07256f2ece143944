"""The README's finetuning command with the shipped recipe config, shortened to one step."""
import subprocess
import sys
from pathlib import Path

import pytest

from densechange.checkpoints import load_file
from densechange.engine.runlog import read_jsonl

REPO = Path(__file__).resolve().parents[2]
LEVIR = REPO.parent / "shared" / "data" / "levir-cd-256"


def test_recipe_config_trains_validates_and_writes_best(tmp_path):
    if not LEVIR.is_dir():
        pytest.skip(f"{LEVIR} not present")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "densechange.finetune", "--config", "configs/finetune/deepcl_resnet18.yaml", f"data.root={LEVIR}",
           "model.encoder=random", "trainer.epochs=1", "trainer.batch_size=2", "trainer.num_workers=0",
           "data.crop_size=128", "data.crops_per_epoch=11", f"run.dir={run}"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    steps = read_jsonl(run / "log.jsonl")
    assert len(steps) == 1 and steps[0]["step"] == 5  # 11 crops, batch 2: 5 steps, logged every 10 and at the end
    assert {"loss", "ce", "dice", "hscl", "lr", "images_per_s"} <= set(steps[0])
    assert steps[0]["loss"] == pytest.approx(steps[0]["ce"] + steps[0]["dice"] + steps[0]["hscl"], rel=1e-4)
    epochs = read_jsonl(run / "metrics.jsonl")
    assert len(epochs) == 1 and 0.0 <= epochs[0]["change_f1"] <= 1.0
    _, meta = load_file(run / "best.safetensors")
    assert meta["kind"] == "change-model"
