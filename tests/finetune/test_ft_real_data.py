"""Real LEVIR-CD samples (skipped without ../shared/data): finetune on 256 tiles, score 1024 tiles."""
import json
import re

import numpy as np
import pytest

from densechange.datasets import read_image
from densechange.engine.runlog import read_jsonl
from densechange.finetune import evaluate, predict
from densechange.finetune.train import main

# A random, very light timm backbone keeps 1024 tiles fast on a CPU (and shows that any timm encoder plugs in).
SMALL_MODEL = ["model.encoder=random", "model.backbone=mobilenetv3_small_050", "model.neck_channels=16",
               "model.embed_dim=8", "model.decoder_channels=8"]
BIG_WINDOWS = ["window.size=640", "window.overlap=256", "window.margin=8", "window.batch_size=4"]  # 4 per 1024 tile


@pytest.fixture(scope="module")
def levir_run(shared_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("levir") / "run"
    root = shared_data / "levir-cd-256"  # no list files: train and val both use all 11 pairs
    with pytest.warns(UserWarning, match="11 of the 11 validation pairs are also training pairs"):
        assert main([f"data.root={root}", "data.split=train", "data.val_split=val", "data.crop_size=64", "data.crops_per_epoch=8", *SMALL_MODEL,
                     "trainer.epochs=1", "trainer.batch_size=2", "trainer.num_workers=0", "trainer.device=cpu",
                     "val.triptychs=1", f"run.dir={run_dir}"]) == 0
    return run_dir


@pytest.mark.slow
def test_short_finetune_on_levir_256(levir_run):
    (record,) = read_jsonl(levir_run / "metrics.jsonl")
    assert record["pixels"] == 11 * 256 * 256  # full tiles, none ignored
    assert (levir_run / "best.safetensors").is_file()
    assert len(list((levir_run / "val_images").iterdir())) == 1


@pytest.mark.slow
def test_evaluate_and_predict_on_levir_1024(levir_run, shared_data, tmp_path, capsys):
    root = shared_data / "levir-cd-1024"
    ckpt = str(levir_run / "best.safetensors")
    out = tmp_path / "metrics.json"
    assert evaluate.main([f"checkpoint={ckpt}", f"data.root={root}", "data.split=test", *BIG_WINDOWS,
                          f"out={out}"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"^F1=\S+ IoU=\S+ P=\S+ R=\S+ OA=\S+ kappa=\S+$", last)
    result = json.loads(out.read_text())
    assert result["pairs"] == 3 and result["clean"]["pixels"] == 3 * 1024 * 1024

    change = tmp_path / "test_7.png"
    assert predict.main([f"checkpoint={ckpt}", f"a={root / 'A' / 'test_7.png'}", f"b={root / 'B' / 'test_7.png'}",
                         f"out={change}", "window.size=640", "window.overlap=256", "window.batch_size=4",
                         "device=cpu"]) == 0
    written = read_image(change)[..., 0]
    assert written.shape == (1024, 1024) and set(np.unique(written)) <= {0, 255}
