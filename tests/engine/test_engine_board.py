"""The run's TensorBoard stream, read back with TensorBoard's reader: curves, purge on resume, pictures, hparams."""
import sys
import time

import numpy as np
import pytest

from densechange.engine.board import RunBoard, flat_hparams
from densechange.engine.errors import ConfigError
from tests.board_reader import EVENTS, board, experiment, hparams, picture, raw_steps, text


def next_second() -> None:
    """Event files are named by the second they were opened in; a resumed file must sort after the first."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)


def test_a_board_without_folder_writes_nothing_and_an_unused_one_no_file(tmp_path):
    off = RunBoard(None)
    off.start(3)
    off.scalars("train", {"loss": 1.0}, step=4)
    off.image("x", np.zeros((4, 4, 3), np.uint8))
    off.text("t", "text")
    off.hparams({"a": 1})
    off.close()
    unused = RunBoard(tmp_path / "run")
    unused.start(0)
    unused.close()
    assert not off.enabled and not list(tmp_path.rglob("*"))


def test_resume_purges_what_the_interrupted_process_logged_after_its_checkpoint(tmp_path):
    first = RunBoard(tmp_path)
    first.start(0)
    for step in range(1, 6):  # logged up to step 5; its last checkpoint was at step 3
        first.scalars("train", {"loss": float(step), "precision": "fp32"}, step=step)
    first.close()
    next_second()
    resumed = RunBoard(tmp_path)
    resumed.start(3)
    for step in range(4, 7):
        resumed.scalars("train", {"loss": 10.0 + step}, step=step)
    resumed.close()
    acc = board(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0),
                                                                      (6, 16.0)]
    assert acc.Tags()["scalars"] == ["train/loss"]  # text values are not curves
    assert raw_steps(tmp_path, "train/loss") == [1, 2, 3, 4, 5, 4, 5, 6]  # the files hold both; the purge marker hides one
    assert len(list(tmp_path.glob(EVENTS))) == 2


def test_pictures_text_and_hyper_parameters_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    run = RunBoard(tmp_path)
    run.start(0)
    run.step = 7
    run.image("val_images/a", pixels)
    run.text("model_card", "# Card\n\nbody")
    config = {"trainer": {"optim": {"lr": 0.01}, "max_steps": None, "compile": False}, "data": {"mean": [0.5, 0.5]},
              "run": {"dir": "runs/x"}}
    run.scalars("train", {"loss": 0.25}, step=7)
    run.hparams(config)
    run.close()
    acc = board(tmp_path)
    [image] = acc.Images("val_images/a")
    assert image.step == 7 and (image.width, image.height) == (10, 6) and np.array_equal(picture(image), pixels)
    assert text(acc, "model_card") == ["# Card\n\nbody"]
    assert hparams(acc) == {"trainer.optim.lr": 0.01, "trainer.max_steps": "null", "trainer.compile": 0.0,
                            "data.mean": "[0.5, 0.5]", "run.dir": "runs/x"}
    assert flat_hparams(config)["trainer.compile"] is False


def test_grid_experiment_names_columns_and_sub_run_metrics(tmp_path):
    grid = RunBoard(tmp_path)
    grid.experiment({"model.encoder": "random", "data.fraction": 0.5}, [("val/change_f1", ""), ("test/f1", "test")])
    grid.close()
    assert experiment(board(tmp_path)) == ({"model.encoder": "DATA_TYPE_STRING", "data.fraction": "DATA_TYPE_FLOAT64"},
                                           [("val/change_f1", ""), ("test/f1", "test")])


def test_a_missing_tensorboard_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match="run.tensorboard=false"):
        RunBoard(tmp_path)
    RunBoard(None)  # switched off: nothing to import
