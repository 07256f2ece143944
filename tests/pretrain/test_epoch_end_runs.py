"""Pretraining runs with the collapse monitor, the per-epoch probe and pseudo-masks (no label folder)."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from densechange.checkpoints import load_encoder, load_file, read_metadata
from densechange.datasets import SyntheticImageMaskDataset
from densechange.datasets.io.images import write_image
from densechange.engine.distributed import DistInfo
from densechange.engine.errors import ConfigError
from densechange.engine.loop import RunContext
from densechange.engine.runlog import read_jsonl
from densechange.pretrain.config import PretrainConfig
from densechange.pretrain.data import ImageFolder
from densechange.pretrain.epoch_end import CollapseMonitor, CollapseWarning, EpochEnd
from densechange.pretrain.pseudo.store import MaskStore
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.masks import colour_texture_features, compute_pseudo_masks
from densechange.pretrain.train import build_epoch_probe, main

TINY = [
    "data.tile_size=64",
    "aug.size=64",
    "model.init=none",
    "model.backbone=test_resnet",
    "model.neck_channels=32",
    "model.proj_hidden=64",
    "model.proj_dim=32",
    "model.pred_hidden=16",
    "model.points_per_class=8",
    "trainer.batch_size=2",
    "trainer.num_workers=0",
    "trainer.log_every=1",
    "trainer.device=cpu",
    "trainer.precision=fp32",
]


def test_collapse_monitor_and_probe_are_logged_every_epoch(tmp_path, recwarn):
    d = tmp_path / "run"
    assert main(TINY + ["data.root=synthetic", "data.synthetic_images=2", "trainer.epochs=2", f"run.dir={d}",
                        "probe.every=1", "probe.data=synthetic", "probe.max_images=3", "probe.pixels_per_image=40",
                        "probe.k=5"]) == 0
    steps, epochs = read_jsonl(d / "log.jsonl"), read_jsonl(d / "metrics.jsonl")
    assert [r["epoch"] for r in epochs] == [0, 1] and len(steps) == 2  # 2 images / batch 2 = 1 step per epoch
    for record in epochs:
        step = [s for s in steps if s["epoch"] == record["epoch"]]
        assert record["proj_std"] == pytest.approx(step[0]["proj_std"], rel=1e-6)  # the term the step logged
        assert record["proj_std_reference"] == pytest.approx(32 ** -0.5)
        # a fresh network is far from collapse: above the warning threshold (0.1 of the reference), and no warning
        assert record["proj_std"] > 0.5 * record["proj_std_reference"]
        assert record["probe_pixels"] == 3 * 40 and record["probe_knn_index"].startswith("exact")
    assert not [w for w in recwarn if issubclass(w.category, CollapseWarning)]
    # The last probe scored the encoder the run saved: probing that file again gives the logged scores.
    cfg = OmegaConf.merge(OmegaConf.structured(PretrainConfig), OmegaConf.load(d / "config.yaml"))
    ctx = RunContext(dir=d, dist=DistInfo(0, 1, 0, torch.device("cpu")), seed=cfg.run.seed, config={})
    probe = build_epoch_probe(cfg, [0.5] * 3, [0.5] * 3, ctx)
    again = probe(load_encoder(d / "encoder.safetensors"))
    assert again == {k: epochs[-1][k] for k in again}
    assert [{k: r[k] for k in again} for r in epochs] != [again, again]  # each probe scored the encoder of its epoch
    meta = read_metadata(d / "encoder.safetensors")
    assert meta["masks"] == "labels" and meta["probe_knn_miou"] == epochs[-1]["probe_knn_miou"]


def test_probe_every_needs_probe_data(tmp_path):
    with pytest.raises(ConfigError, match="probe.data"):
        main(TINY + ["data.root=synthetic", "probe.every=2", f"run.dir={tmp_path / 'r'}"])


def test_collapse_warning_below_the_threshold():
    class Collapsed(torch.nn.Module):
        def forward(self, batch):
            return {"loss": torch.zeros(()), "proj_std": torch.tensor(batch)}

    task = Collapsed()
    monitor = CollapseMonitor(task, proj_dim=100, warn_fraction=0.1)  # healthy 0.1, warning below 0.01
    end = EpochEnd(monitor)
    task(0.02), task(0.04)
    assert end(task, 0) == {"proj_std": pytest.approx(0.03), "proj_std_reference": pytest.approx(0.1),
                            "collapse_warning": 0.0}
    task(0.004)
    task.eval()
    task(0.5)  # evaluation forwards do not count
    with pytest.warns(CollapseWarning, match="collapsing"):
        record = end(task, 1)
    assert record["proj_std"] == pytest.approx(0.004) and record["collapse_warning"] == 1.0  # the warning as a curve
    assert end(task, 2) == {}  # no step since the last epoch end
    monitor.close()


def write_image_only_folder(root, n=2, size=64):
    scenes = SyntheticImageMaskDataset(n, size=size, seed=2)
    for i in range(n):
        write_image(root / "A" / f"tile{i}.png", scenes.arrays(i)[0])
    return root


def test_pseudo_masks_on_an_image_only_folder(tmp_path, monkeypatch):
    root = write_image_only_folder(tmp_path / "data")
    pseudo = ["data.masks=pseudo", f"data.root={root}", "pseudo.clusters=3", "pseudo.pixels_per_image=64",
              "pseudo.window=5", "pseudo.refresh_every=1", "trainer.epochs=2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(TINY + pseudo + ["trainer.max_steps=2", f"run.dir={one}"]) == 0  # 2 images, batch 2: 1 step per epoch
    log = read_jsonl(one / "log.jsonl")
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert read_jsonl(one / "metrics.jsonl")[0]["pseudo_generation"] == 1  # refreshed from the encoder after epoch 0
    # Generation 0 is the colour-texture clustering, stable for the seed.
    names = ImageFolder(root).names
    saved = MaskStore(one / "pseudo_masks_g0", names)
    again = compute_pseudo_masks(ImageFolder(root), lambda x: colour_texture_features(x, 5), tmp_path / "again",
                                 PseudoConfig(clusters=3, pixels_per_image=64), seed=0)
    assert saved.generation == 0 and all(np.array_equal(a, b) for a, b in zip(saved, again))
    refreshed = MaskStore(one / "pseudo_masks_g1", names)
    assert all(m.shape == (64, 64) and m.max() < 3 for m in refreshed)
    assert not all(np.array_equal(a, b) for a, b in zip(saved, refreshed))  # encoder clusters, not the colour ones
    assert read_metadata(one / "encoder.safetensors")["masks"] == "pseudo"
    # Resuming in epoch 1 restores generation 1 from the run folder: the same weights as one uninterrupted run.
    assert main(TINY + pseudo + ["trainer.max_steps=1", f"run.dir={two}"]) == 0

    def remake(*args, **kwargs):
        raise AssertionError("a resumed run must load its pseudo-masks, not remake them")

    monkeypatch.setattr("densechange.pretrain.pseudo.refresh.compute_pseudo_masks", remake)
    assert main(TINY + pseudo + ["trainer.max_steps=2", f"run.dir={two}", "trainer.resume=auto"]) == 0
    ta, tb = load_file(one / "encoder.safetensors")[0], load_file(two / "encoder.safetensors")[0]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_change_probe_at_the_end_of_epochs(tmp_path):
    """probe.task=change with change pairs as probe.data: change F1 and AUROC in the metrics, the saved encoder's."""
    d = tmp_path / "run"
    probe = ["probe.every=1", "probe.task=change", "probe.data=synthetic", "probe.max_images=2", "probe.tile_size=32",
             "probe.pixels_per_class=50", "probe.stride=8"]
    assert main(TINY + ["data.root=synthetic", "data.synthetic_images=2", "trainer.epochs=1", f"run.dir={d}", *probe]) == 0
    record = read_jsonl(d / "metrics.jsonl")[-1]
    assert 0 <= record["probe_change_f1"] <= 1 and 0 <= record["probe_change_auroc"] <= 1
    assert record["probe_change_test_cells"] > 0 and 0 < record["probe_change_train_cells"] <= 100
    # The probe of the saved encoder, rebuilt from the recorded config, gives the logged scores.
    cfg = OmegaConf.merge(OmegaConf.structured(PretrainConfig), OmegaConf.load(d / "config.yaml"))
    ctx = RunContext(dir=d, dist=DistInfo(0, 1, 0, torch.device("cpu")), seed=cfg.run.seed, config={})
    again = build_epoch_probe(cfg, [0.5] * 3, [0.5] * 3, ctx)(load_encoder(d / "encoder.safetensors"))
    assert again == {k: record[k] for k in again}
    assert read_metadata(d / "encoder.safetensors")["probe_change_auroc"] == record["probe_change_auroc"]
    with pytest.raises(ConfigError, match="probe.split=test and probe.test_split=test"):
        main(TINY + ["data.root=synthetic", f"run.dir={tmp_path / 'r'}", *probe, "probe.split=test"])
