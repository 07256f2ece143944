"""End-to-end finetuning: run artefacts, bit-exact reload in predict, evaluation, resume."""
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from densechange.checkpoints import load_file
from densechange.datasets import SyntheticChangeDataset, read_image, to_float_image
from densechange.datasets.io.images import write_image
from densechange.engine.runlog import read_jsonl
from densechange.finetune import evaluate, predict
from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.data import synthetic_split
from densechange.finetune.inference.scoring import NuisanceSettings, ScoreSettings
from densechange.finetune.train import main
from tests.tolerances import FP32_FOLD_RTOL, assert_within, decision_ties, fold_bounds

SUMMARY = re.compile(r"^F1=\d\.\d{4} IoU=\d\.\d{4} P=\d\.\d{4} R=\d\.\d{4} OA=\d\.\d{4} kappa=-?\d\.\d{4}$")


def test_run_writes_its_artefacts(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.yaml", "log.jsonl", "metrics.jsonl", "last.safetensors", "best.safetensors", "final.safetensors",
            "val_images"} <= names
    records = read_jsonl(tiny_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert r["pixels"] == 4 * 64 * 64  # every validation pixel, at full size
    log = read_jsonl(tiny_run / "log.jsonl")
    assert len(log) == 4 and {"loss", "ce", "dice", "hscl"} <= set(log[0])
    pictures = sorted(p.name for p in (tiny_run / "val_images").iterdir())
    assert pictures == [f"epoch{e:03d}_synthetic_{i:05d}.png" for e in (0, 1) for i in (0, 1)]
    assert Image.open(tiny_run / "val_images" / pictures[0]).size == (4 * 64 + 3 * 4, 64)  # A | B | label | prediction


@pytest.mark.numeric
def test_final_checkpoint_scores_the_last_validation(tiny_run, tiny_window, tiny_window_settings, tmp_path):
    """The scores of the last epoch are those of the weights the run ended with (final.safetensors)."""
    out = tmp_path / "metrics.json"
    assert evaluate.main([f"checkpoint={tiny_run / 'final.safetensors'}", "data.root=synthetic", "data.split=val",
                          "data.synthetic_pairs=4", "data.synthetic_size=64", *tiny_window, "precision=fp32",
                          "pseudo_change=all", f"out={out}"]) == 0
    last = read_jsonl(tiny_run / "metrics.jsonl")[-1]
    result = json.loads(out.read_text())
    clean = result["clean"]
    assert clean.keys() <= last.keys() and clean["pixels"] == last["pixels"]
    # validation also scored the pairs under all nuisances (val.pseudo_change=all, seed 0): the same as evaluate's
    assert "pseudo_change_shift" not in result
    settings = ScoreSettings(pseudo_change="all", nuisance=NuisanceSettings(**result["config"]["nuisance"]))
    # evaluate predicts with the model optimised for inference (folded norms, channels-last), validation with the
    # training model: their logits agree to fp32 rounding, and each score within what the pixels that tie at that
    # rounding (at the decision, at an edge of the AUROC/AP histogram's bins) allow
    bounds = fold_bounds(load_change_model(tiny_run / "final.safetensors")[0], synthetic_split("val", 4, 64),
                         tiny_window_settings, settings)
    assert_within(clean, bounds["clean"])
    assert_within(last, bounds["clean"], clean)
    pseudo = ("change_f1", "fpr_unchanged", "auroc", "ap", "flip_rate", "induced_false_alarms", "induced_misses")
    assert_within(result["pseudo_change"], bounds["pseudo_change"], pseudo)
    assert_within(last, bounds["pseudo_change"], pseudo, prefix="pc_")


def test_best_checkpoint_is_the_best_epoch_and_self_describing(tiny_run):
    records = read_jsonl(tiny_run / "metrics.jsonl")
    tensors, meta = load_file(tiny_run / "best.safetensors")
    best = max(records, key=lambda r: r["change_f1"])  # first of the best on ties, like the loop
    assert meta["kind"] == "change-model" and meta["epoch"] == best["epoch"]
    assert meta["metrics"]["change_f1"] == best["change_f1"]
    assert meta["encoder"]["backbone"] == "test_resnet" and meta["encoder"]["neck"]["channels"] == 16
    assert meta["model"] == {"name": "deepcl", "metric_branch": True, "prior": "attention", "embed_dim": 8,
                             "decoder_channels": 8, "num_classes": 2}
    assert meta["mean"] == [0.5] * 3 and meta["config"]["data"]["root"] == "synthetic"
    assert any(k.startswith("encoder.backbone.") for k in tensors)
    assert {k.split(".")[0] for k in tensors} == {"encoder", "metric_head", "decoder", "classifier"}


@pytest.mark.numeric
def test_checkpoint_reloads_bit_exactly_in_predict(tiny_run, tmp_path):
    path = tiny_run / "best.safetensors"
    tensors, _ = load_file(path)
    model, _ = load_change_model(path)
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())

    a_arr, b_arr, _ = SyntheticChangeDataset(1, 96, seed=5).arrays(0)
    write_image(tmp_path / "a.png", a_arr)
    write_image(tmp_path / "b.png", b_arr)
    out, dist = tmp_path / "change.png", tmp_path / "distance.png"
    assert predict.main([f"checkpoint={path}", f"a={tmp_path / 'a.png'}", f"b={tmp_path / 'b.png'}",
                         f"out={out}", f"distance={dist}", "device=cpu", "precision=fp32"]) == 0
    a, b = to_float_image(a_arr), to_float_image(b_arr)
    with torch.no_grad():
        want = model(a[None], b[None])
    written = read_image(out)[..., 0]
    assert set(np.unique(written)) <= {0, 255}
    # predict folds the norms of the weights it loaded: the same decisions but for pixels whose two logits tie
    # within the fold's fp32 rounding
    logits = want["logits"][0].flatten(1).T
    decided = ~decision_ties(logits, FP32_FOLD_RTOL * float(logits.abs().max())).view(96, 96).numpy()
    assert np.array_equal(written[decided], (want["logits"][0].argmax(0).numpy().astype(np.uint8) * 255)[decided])
    heat = read_image(dist)[..., 0]
    assert heat.shape == (96, 96) and heat.dtype == np.uint8


@pytest.mark.numeric
def test_evaluate_reproduces_validation(tiny_run, tiny_window, tiny_window_settings, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    args = [f"checkpoint={tiny_run / 'best.safetensors'}", "data.root=synthetic", "data.split=val",
            "data.synthetic_pairs=4", "data.synthetic_size=64", *tiny_window, "precision=fp32", f"out={out}"]
    assert evaluate.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(lines[-1])
    assert any("change class" in line for line in lines)
    result = json.loads(out.read_text())
    assert result["precision"] == "fp32"
    best = next(r for r in read_jsonl(tiny_run / "metrics.jsonl") if r["epoch"] == result["trained_epoch"])
    # folded norms against the training model: within what the pixels tied at fp32 rounding allow (see above)
    bounds = fold_bounds(load_change_model(tiny_run / "best.safetensors")[0], synthetic_split("val", 4, 64),
                         tiny_window_settings)["clean"]
    assert result["clean"]["pixels"] == best["pixels"]
    assert_within(result["clean"], bounds)
    assert_within(best, bounds, result["clean"])
    m = result["clean"]
    assert lines[-1] == (f"F1={m['change_f1']:.4f} IoU={m['change_iou']:.4f} P={m['change_precision']:.4f} "
                         f"R={m['change_recall']:.4f} OA={m['oa']:.4f} kappa={m['kappa']:.4f}")


def test_evaluate_with_pseudo_changes(tiny_run, tiny_window, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    args = [f"checkpoint={tiny_run / 'best.safetensors'}", "data.root=synthetic", "data.synthetic_pairs=3",
            "data.synthetic_size=64", *tiny_window, "precision=fp32", "pseudo_change=each", f"out={out}"]
    assert evaluate.main(args) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = ["clean", "pseudo_change", "pseudo_change_colour", "pseudo_change_blur", "pseudo_change_shift"]
    assert set(result) >= set(rows)
    assert all(result[k]["pixels"] == 3 * 64 * 64 for k in rows)
    for k in rows[1:]:  # what the nuisance did to the decisions, and the threshold-free scores
        assert 0 <= result[k]["flip_rate"] <= 1 and 0 <= result[k]["induced_false_alarms"] <= 1
        assert {"auroc", "ap", "fpr_unchanged", "change_f1", "induced_misses"} <= set(result[k])
    assert "flip_rate" not in result["clean"] and "auroc" in result["clean"]
    assert "pseudo-change" in text and "shift only" in text and "induced FA" in text
    assert SUMMARY.match(text.strip().splitlines()[-1])
    # the nuisances are drawn from (seed, image): a second run scores exactly the same
    assert evaluate.main(args) == 0
    assert json.loads(out.read_text())["pseudo_change"] == result["pseudo_change"]


def test_resume_continues_the_run(tiny_run, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    assert main([*tiny_overrides, f"run.dir={run_dir}", "trainer.epochs=3", "trainer.resume=auto"]) == 0
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["step"] for r in read_jsonl(run_dir / "log.jsonl")][-2:] == [5, 6]


def test_synthetic_splits_are_disjoint():
    a_train = synthetic_split("train", 2, 64)[0]["a"]
    a_val = synthetic_split("val", 2, 64)[0]["a"]
    assert not torch.equal(a_train, a_val)
