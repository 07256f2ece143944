"""What ``densechange pretrain`` shows in TensorBoard, read back with TensorBoard's reader.

The curves mirror ``log.jsonl`` and ``metrics.jsonl`` point for point; a resumed run shows each step
once; two processes write one stream; pseudo-masks appear at each generation; the run ends with its
config as hyper-parameters and its model card as text.
"""
import json
import time

import numpy as np
import pytest

from densechange.pretrain.data import ImageFolder
from densechange.pretrain.pseudo.preview import mask_preview
from densechange.pretrain.pseudo.refresh import masks_path
from densechange.pretrain.pseudo.store import MaskStore
from densechange.pretrain.train import main
from tests.board_reader import EVENTS, assert_mirrors, board, hparams, picture, raw_steps, text
from tests.pretrain.pseudo.test_dataset import write_two_sizes


def test_curves_mirror_the_logs_and_the_run_ends_with_hparams_and_card(pretrain_run):
    acc = board(pretrain_run)
    tags = assert_mirrors(acc, pretrain_run / "log.jsonl", "train") | assert_mirrors(acc, pretrain_run / "metrics.jsonl", "epoch")
    assert set(acc.Tags()["scalars"]) == tags
    assert {"train/loss", "train/cons", "train/push", "train/syn", "train/proj_std", "train/lr", "train/images_per_s",
            "epoch/proj_std", "epoch/collapse_warning"} <= tags
    assert [e.value for e in acc.Scalars("epoch/collapse_warning")] == [0.0]
    values = hparams(acc)
    assert values["trainer.max_steps"] == 4 and values["run.dir"] == str(pretrain_run) and values["run.tensorboard"] == 1
    assert text(acc, "model_card") == [(pretrain_run / "MODEL_CARD.md").read_text()]
    assert len(list(pretrain_run.glob(EVENTS))) == 1


def test_resumed_run_shows_every_step_once(pretrain_overrides, tmp_path, monkeypatch):
    import densechange.pretrain.sadl.model as model_mod

    run_dir = tmp_path / "run"
    args = [*pretrain_overrides, f"run.dir={run_dir}", "trainer.max_steps=5"]
    original, calls = model_mod.SaDL.forward, {"n": 0}

    def crashing(self, batch, generator=None):
        calls["n"] += 1
        if calls["n"] == 5:  # steps 1-4 are logged; the last checkpoint is the epoch end at step 3
            raise KeyboardInterrupt("killed")
        return original(self, batch, generator)

    monkeypatch.setattr(model_mod.SaDL, "forward", crashing)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(model_mod.SaDL, "forward", original)
    time.sleep(1.0 - time.time() % 1.0 + 0.01)  # event files are named by the second they were opened in
    assert main([*args, "trainer.resume=auto"]) == 0
    assert raw_steps(run_dir, "train/loss") == [1, 2, 3, 4, 4, 5]  # step 4 twice in the files
    acc = board(run_dir)
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5]  # once on the screen
    assert_mirrors(acc, run_dir / "log.jsonl", "train")  # the resumed process's values for step 4
    assert_mirrors(acc, run_dir / "metrics.jsonl", "epoch")
    assert main([*args, "trainer.resume=auto"]) == 0  # finished already: nothing new to show
    acc = board(run_dir)
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5]
    assert len(text(acc, "model_card")) == 1 and len(raw_steps(run_dir, "_hparams_/session_start_info")) == 1


def test_switched_off_run_writes_no_event_file(pretrain_overrides, tmp_path):
    assert main([*pretrain_overrides, f"run.dir={tmp_path / 'run'}", "trainer.max_steps=1", "run.tensorboard=false"]) == 0
    assert (tmp_path / "run" / "log.jsonl").is_file() and not list(tmp_path.rglob(EVENTS))


def test_pseudo_masks_of_the_first_images_at_each_generation(pretrain_overrides, tmp_path):
    root = write_two_sizes(tmp_path / "data")  # 128² and 64² images, 5 crops of 64²: 2 steps per epoch
    run_dir = tmp_path / "run"
    assert main([*pretrain_overrides, "data.masks=pseudo", f"data.root={root}", "pseudo.clusters=3",
                 "pseudo.pixels_per_image=64", "pseudo.window=5", "pseudo.tile=32", "pseudo.refresh_every=1",
                 "trainer.max_steps=3", f"run.dir={run_dir}"]) == 0
    acc = board(run_dir)
    source = ImageFolder(root)
    assert sorted(acc.Tags()["images"]) == [f"pseudo_masks/{name}" for name in sorted(source.names)]
    for i, name in enumerate(source.names):
        events = acc.Images(f"pseudo_masks/{name}")
        assert [e.step for e in events] == [0, 2]  # generation 0 before training, generation 1 after epoch 0
        for generation, event in enumerate(events):
            store = MaskStore(masks_path(run_dir, generation), source.names)
            assert np.array_equal(picture(event), np.asarray(mask_preview(source, store, i, store.size_of(i))))
    assert [e.value for e in acc.Scalars("epoch/pseudo_generation")] == [1.0]


@pytest.mark.slow
def test_two_processes_write_one_event_stream(one_node_run):
    run_dir = one_node_run.run
    [events] = list(run_dir.glob(EVENTS))
    r0, r1 = (json.loads((one_node_run.probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert [w for w in r0["writes"] if events.name in w] and not [w for w in r1["writes"] if "tfevents" in w]
    acc = board(run_dir)
    assert_mirrors(acc, run_dir / "log.jsonl", "train")
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))  # 8 steps of both processes, once
    assert_mirrors(acc, run_dir / "metrics.jsonl", "epoch")
