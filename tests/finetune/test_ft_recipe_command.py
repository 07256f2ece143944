"""The docs' finetuning command with the shipped recipe config, shortened to two steps, then its evaluation.

The suite's one ``densechange finetune`` and one ``densechange evaluate`` in processes of their own,
through the console script. On three of the LEVIR-CD sample tiles when ../shared/data has them,
else on synthetic pairs of the same count.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from densechange.checkpoints import load_file
from densechange.engine.config import load_config
from densechange.engine.runlog import read_jsonl
from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.config import EvaluateConfig
from densechange.finetune.data import evaluation_set
from densechange.finetune.inference.windows import DEFAULT_WINDOWS
from tests.tolerances import assert_within, fold_bounds

REPO = Path(__file__).resolve().parents[2]
LEVIR = REPO.parent / "shared" / "data" / "levir-cd-256"
CONSOLE_SCRIPT = Path(sys.executable).parent / "densechange"
LEVIR_PAIRS = ("train_36_0512_0512.png", "val_27_0000_0256.png", "test_2_0000_0000.png")


def data_keys(tmp_path: Path) -> tuple[list[str], list[str], int]:
    """Training keys, evaluation keys and validation pixels: three LEVIR-CD sample pairs of 256 x 256 (copied into
    ``tmp_path``, no list files: every split is all three; 5 random 128 crops for training) when ../shared/data has
    them, else 5 synthetic training pairs of 128 x 128 (used as rendered) and 3 validation pairs."""
    if LEVIR.is_dir():
        root = tmp_path / "levir"
        for role in ("A", "B", "label"):
            (root / role).mkdir(parents=True)
            for name in LEVIR_PAIRS:
                shutil.copyfile(LEVIR / role / name, root / role / name)
        return [f"data.root={root}"], [f"data.root={root}"], 3 * 256 * 256
    return (["data.root=synthetic", "data.synthetic_pairs=5", "data.synthetic_val_pairs=3", "data.synthetic_size=128"],
            ["data.root=synthetic", "data.synthetic_pairs=3", "data.synthetic_size=128"], 3 * 128 * 128)


def densechange(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a real-data run where the sample tiles are present
@pytest.mark.numeric
def test_recipe_config_trains_validates_and_writes_best(tmp_path):
    run = tmp_path / "run"
    DATA, EVAL_DATA, VAL_PIXELS = data_keys(tmp_path)
    res = densechange("finetune", "--config", "configs/finetune/deepcl_resnet18.yaml", *DATA, "model.encoder=random",
                      "trainer.epochs=1", "trainer.batch_size=2", "trainer.num_workers=0", "trainer.precision=fp32",
                      "data.crop_size=128", "data.crops_per_epoch=5", f"run.dir={run}")
    assert res.returncode == 0, res.stderr[-2000:]
    steps = read_jsonl(run / "log.jsonl")
    assert len(steps) == 1 and steps[0]["step"] == 2  # 5 samples, batch 2: 2 steps, logged every 20 and at the end
    assert {"loss", "ce", "dice", "hscl", "lr", "images_per_s"} <= set(steps[0])
    assert steps[0]["loss"] == pytest.approx(steps[0]["ce"] + steps[0]["dice"] + steps[0]["hscl"], rel=1e-4)
    epochs = read_jsonl(run / "metrics.jsonl")
    assert len(epochs) == 1 and epochs[0]["pixels"] == VAL_PIXELS  # every validation pixel
    _, meta = load_file(run / "best.safetensors")
    assert meta["kind"] == "change-model" and meta["encoder"]["backbone"] == "resnet18" and meta["epoch"] == 0

    # densechange evaluate of the best weights on the validation pairs scores what the run's validation scored
    out = tmp_path / "metrics.json"
    # at the default window, as the recipe's validation
    res = densechange("evaluate", f"checkpoint={run / 'best.safetensors'}", *EVAL_DATA, "data.split=val",
                      "precision=fp32", f"out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    clean = json.loads(out.read_text())["clean"]
    # Validation runs the training model as it is; evaluate folds its batch norms into the convolutions, which
    # changes logits in the last float bits. That can move a pixel whose two logits tie within that rounding across
    # the decision, or a probability that close to an edge of the AUROC/AP histogram into the next bin: every score
    # lies within what those pixels allow.
    assert clean["pixels"] == epochs[0]["pixels"]
    model, _ = load_change_model(run / "best.safetensors")
    d = load_config(EvaluateConfig, None, [*EVAL_DATA, "data.split=val"]).data  # the pairs evaluate scored
    pairs = evaluation_set(d.root, d.split, d.ignore_value, d.synthetic_pairs, d.synthetic_size, d.skip_incomplete,
                           d.layout)
    bounds = fold_bounds(model, pairs, DEFAULT_WINDOWS)["clean"]  # the recipe validates at the default window
    assert_within(clean, bounds)
    assert_within(epochs[0], bounds, clean)
    m = clean
    assert res.stdout.strip().splitlines()[-1] == (
        f"F1={m['change_f1']:.4f} IoU={m['change_iou']:.4f} P={m['change_precision']:.4f} "
        f"R={m['change_recall']:.4f} OA={m['oa']:.4f} kappa={m['kappa']:.4f}")
