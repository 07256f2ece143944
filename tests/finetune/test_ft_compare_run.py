"""densechange compare end to end: a 2 x 2 x 1 grid writes its CSV, table and plot; a rerun skips finished cells."""
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densechange.engine.errors import ConfigError
from densechange.engine.runlog import read_jsonl
from densechange.finetune import evaluate
from densechange.finetune.compare.cli import main
from densechange.finetune.compare.tables import METRIC_FIELDS
from densechange.finetune.inference.scoring import ROWS
from tests.board_reader import EVENTS, as_stored, assert_mirrors, board, experiment

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "densechange"
TINY = ["data.root=synthetic", "data.synthetic_pairs=8", "data.synthetic_val_pairs=2", "data.synthetic_size=64",
        "data.val_split=null", "model.backbone=mobilenetv3_small_050", "model.neck_channels=16", "model.embed_dim=8",
        "model.decoder_channels=8", "trainer.batch_size=4", "trainer.num_workers=0", "trainer.device=cpu", "trainer.optim.name=adamw",
        "trainer.precision=fp32", "val.window.size=64", "val.window.overlap=16", "val.window.margin=4"]
GRID = ["grid.eval=[precision=fp32]", "grid.variants=[deepcl,no_metric]", "grid.fractions=[0.5,1]", "grid.seeds=[0]", "grid.steps=2"]
# densechange evaluate of a cell's final weights, as the grid scores it: the 2 test pairs with pseudo-changes.
SCORING = ["pseudo_change=each", "data.root=synthetic", "data.split=test", "data.synthetic_pairs=2", "data.synthetic_size=64",
           "window.size=64", "window.overlap=16", "window.margin=4", "device=cpu", "precision=fp32"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    assert main([f"grid.out={out}", *GRID, *TINY]) == 0
    return out


def test_grid_writes_runs_csv_table_and_plot(compared, tmp_path):
    with open(compared / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["variant"], float(r["fraction"]), int(r["train_pairs"])) for r in rows] == [
        ("deepcl", 0.5, 4), ("no_metric", 0.5, 4), ("deepcl", 1.0, 8), ("no_metric", 1.0, 8)]
    for r in rows:
        run = compared / r["run_dir"]
        assert (run / "config.yaml").is_file() and (run / "final.safetensors").is_file()
        result = json.loads((run / "result.json").read_text())
        assert float(r["f1"]) == result["test"]["clean"]["change_f1"]
        assert float(r["pc_fpr"]) == result["test"]["pseudo_change"]["fpr_unchanged"]
        assert float(r["pc_flips"]) == result["test"]["pseudo_change"]["flip_rate"]
        assert float(r["pc_shift_induced_fa"]) == result["test"]["pseudo_change_shift"]["induced_false_alarms"]
        assert float(r["auroc"]) == result["test"]["clean"]["auroc"]
        assert r["checkpoint"] == "final.safetensors" and r["test_pairs"] == "2" and r["steps"] == "2"
        assert r["epochs"] == ("2" if r["fraction"] == "0.5" else "1")  # 4 pairs: 1 step per epoch; 8 pairs: 2
        # the table's scores are those of the cell's final weights, scored again here
        again = tmp_path / r["run_dir"].replace("/", "_") / "metrics.json"
        assert evaluate.main([f"checkpoint={run / 'final.safetensors'}", f"out={again}", *SCORING]) == 0
        rescored = json.loads(again.read_text())
        assert all(rescored[k] == result["test"][k] for k in ("clean", "pseudo_change", "pseudo_change_colour",
                                                              "pseudo_change_blur", "pseudo_change_shift"))
        assert rescored["clean"]["pixels"] == 2 * 64 * 64
    # the half subset lies inside the whole training set, and both variants of a seed share it
    pairs = {r["variant"] + r["fraction"]: (compared / r["run_dir"] / "train_pairs.txt").read_text().splitlines()[1:]
             for r in rows}
    assert pairs["deepcl0.5"] == pairs["no_metric0.5"] and set(pairs["deepcl0.5"]) < set(pairs["deepcl1.0"])
    text = (compared / "results.md").read_text()
    assert "| random | no_metric | 0.5 | 1 |" in text and "## Paired by seed against random/deepcl" in text
    assert "one seed: no evidence either way" in text
    image = Image.open(compared / "f1_vs_fraction.png")
    assert image.format == "PNG" and image.size == (600, 400)
    assert [r["status"] for r in read_jsonl(compared / "compare.jsonl")] == ["done"] * 4


def test_grid_folder_is_one_tensorboard_view(compared):
    """One run per cell with its curves, a ``test`` sub-run with its scores, and the grid's HParams table."""
    with open(compared / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        run = compared / r["run_dir"]
        assert len(list(run.glob(EVENTS))) == 1
        assert_mirrors(board(run), run / "log.jsonl", "train")
        test = board(run / "test")
        for column in METRIC_FIELDS:
            [point] = test.Scalars(f"test/{column}")
            assert point.step == int(r["steps"]) and point.value == as_stored(float(r[column])), column
    kinds, metrics = experiment(board(compared))
    assert kinds == {"model.encoder": "DATA_TYPE_STRING", "data.fraction": "DATA_TYPE_FLOAT64",
                     "data.fraction_seed": "DATA_TYPE_FLOAT64", "run.seed": "DATA_TYPE_FLOAT64",
                     "model.metric_branch": "DATA_TYPE_FLOAT64"}
    assert ("test/f1", "test") in metrics and ("test/pc_fpr", "test") in metrics


def test_rerun_skips_finished_cells(compared):
    before = {p: p.stat().st_mtime_ns for p in compared.rglob("*.safetensors")}
    assert main([f"grid.out={compared}", *GRID, *TINY]) == 0
    assert [r["status"] for r in read_jsonl(compared / "compare.jsonl")][4:] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in compared.rglob("*.safetensors")} == before
    with pytest.raises(ConfigError, match="finished run made with other settings"):
        main([f"grid.out={compared}", *GRID, *TINY, "model.embed_dim=4"])


def test_unknown_baseline_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="grid.baselines entry imagenet/deepcl is not a cell"):
        main([f"grid.out={tmp_path}", *GRID, "grid.baselines=[imagenet/deepcl]", *TINY])


@pytest.mark.slow
def test_cells_use_every_process_under_torchrun(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "densechange.finetune.compare",
           f"grid.out={out}", "grid.fractions=[0.5,1]", "grid.steps=2", "grid.plot=false", *TINY,
           "trainer.batch_size=2", "trainer.log_every=1"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("2 runs tabulated") == 1  # rank 0 alone writes
    for run in ("random/deepcl/f0.5/s0", "random/deepcl/f1/s0"):
        pairs = len((out / run / "train_pairs.txt").read_text().splitlines()) - 1
        assert [r["step"] for r in read_jsonl(out / run / "log.jsonl")] == [1, 2]  # steps of 2 processes x 2 pairs
        assert json.loads((out / run / "result.json").read_text())["train_pairs"] == pairs
    assert [r["status"] for r in read_jsonl(out / "compare.jsonl")] == ["done", "done"]


def test_report_only_tabulates_finished_cells(compared, tmp_path):
    """Also the suite's one ``densechange compare`` in a process of its own, through the console script."""
    grid = [*GRID[:-2], "grid.seeds=[0,1]", "grid.steps=2"]  # seed 1 never ran
    res = subprocess.run([str(CONSOLE_SCRIPT), "compare", f"grid.out={compared}", *grid, "grid.report_only=true",
                          "grid.plot=false", *TINY],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == f"4 runs tabulated: {compared / 'results.csv'}, {compared / 'results.md'}"
    with open(compared / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert "4 of the 8 cells are not finished" in (compared / "results.md").read_text()
    assert not (compared / "random" / "deepcl" / "f1" / "s1").exists()
    with pytest.raises(ConfigError, match="no finished cell"):
        main([f"grid.out={tmp_path / 'empty'}", *GRID, "grid.report_only=true", *TINY])


def _layout_writers():
    """The tiny public-layout trees of the dataset tests (tests/datasets/conftest.py)."""
    spec = importlib.util.spec_from_file_location("layout_fixtures", REPO / "tests" / "datasets" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_cell_is_scored_with_the_layout_and_nuisances_it_trained_with(tmp_path):
    """A grid on a described layout: the labels the cell is scored against are those of ``data.layout.*``.

    The LEVIR-CD tree gets a ``gt`` folder beside ``label`` holding the inverted labels; auto-detection
    reads ``label``, ``data.layout.label=gt`` reads ``gt``. The cell's test scores are those of
    ``evaluate`` told the layout (and the validation's nuisance seed) by hand, and the same weights scored
    on the auto-detected tree get the complementary overall accuracy: every label pixel flipped.
    """
    root = _layout_writers().levir_cd(tmp_path / "cd", seed=0).root
    for split in ("train", "val", "test"):
        (root / split / "gt").mkdir()
        for png in (root / split / "label").iterdir():
            Image.fromarray(255 - np.asarray(Image.open(png))).save(root / split / "gt" / png.name)
    cell = [f"data.root={root}", "data.layout.label=gt", "data.crop_size=32", *TINY[4:], "trainer.batch_size=2",
            "val.nuisance.seed=5"]
    out = tmp_path / "out"
    assert main([f"grid.out={out}", "grid.eval=[precision=fp32]", "grid.steps=1", "grid.plot=false", *cell]) == 0
    run = out / "random" / "deepcl" / "f1" / "s0"
    result = json.loads((run / "result.json").read_text())
    config = json.loads((run / "test_metrics.json").read_text())["config"]
    assert config["data"]["layout"]["label"] == "gt" and config["nuisance"]["seed"] == 5
    assert config["window"] == {"size": 64, "overlap": 16, "margin": 4, "batch_size": None}  # the cell's val.window
    assert result["test_pairs"] == 2 and result["test"]["clean"]["pixels"] == 2 * 48 * 48

    scoring = [f"checkpoint={run / 'final.safetensors'}", f"data.root={root}", "data.split=test", "window.size=64",
               "window.overlap=16", "window.margin=4", "device=cpu", "precision=fp32"]
    by_hand = evaluate.evaluate_checkpoint(evaluate_config(
        [*scoring, "data.layout.label=gt", "pseudo_change=each", "nuisance.seed=5", f"out={tmp_path / 'by_hand.json'}"]))
    assert all(by_hand[k] == result["test"][k] for k in ROWS)
    auto = evaluate.evaluate_checkpoint(evaluate_config([*scoring, f"out={tmp_path / 'auto.json'}"]))
    assert auto["clean"]["pixels"] == result["test"]["clean"]["pixels"]
    assert auto["clean"]["oa"] == pytest.approx(1 - result["test"]["clean"]["oa"], abs=1e-12)  # fp64 ratios


def evaluate_config(overrides):
    from densechange.engine.config import load_config
    from densechange.finetune.config import EVAL_CHOICES, EvaluateConfig

    return load_config(EvaluateConfig, None, overrides, choices=EVAL_CHOICES, required=("checkpoint", "data.root"))
