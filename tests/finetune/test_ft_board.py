"""What ``densechange finetune`` shows in TensorBoard: the logs' curves, the validation pictures, the config."""
import numpy as np
from PIL import Image

from densechange.engine.runlog import read_jsonl
from tests.board_reader import assert_mirrors, board, hparams, picture


def test_curves_pictures_and_hparams_of_a_finetuning_run(tiny_run):
    acc = board(tiny_run)
    tags = assert_mirrors(acc, tiny_run / "log.jsonl", "train") | assert_mirrors(acc, tiny_run / "metrics.jsonl", "val")
    assert set(acc.Tags()["scalars"]) == tags
    assert {"train/loss", "train/hscl", "train/lr", "train/images_per_s", "val/change_f1", "val/auroc",
            "val/pc_flip_rate", "val/pc_induced_false_alarms"} <= tags  # the pseudo-change measures too
    steps = [r["step"] for r in read_jsonl(tiny_run / "metrics.jsonl")]
    names = sorted({p.name.split("_", 1)[1][:-len(".png")] for p in (tiny_run / "val_images").glob("*.png")})
    assert len(names) == 2 and sorted(acc.Tags()["images"]) == [f"val_images/{n}" for n in names]
    for name in names:
        events = acc.Images(f"val_images/{name}")
        assert [e.step for e in events] == steps  # each epoch's pictures at the step of its metrics
        for epoch, event in enumerate(events):
            saved = np.asarray(Image.open(tiny_run / "val_images" / f"epoch{epoch:03d}_{name}.png").convert("RGB"))
            assert np.array_equal(picture(event), saved)
    values = hparams(acc)
    assert values["model.backbone"] == "test_resnet" and values["trainer.epochs"] == 2
