"""Pretraining without masks draws the masked mode's crops: in proportion to area, read by window, resumed exactly."""
from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.checkpoints import load_file
from densechange.datasets import IGNORE_INDEX
from densechange.datasets.io.images import write_image
from densechange.datasets.transforms.geometry import draw_geometry, sample_rng
from densechange.engine.errors import ConfigError
from densechange.engine.runlog import read_jsonl
from densechange.pretrain.data import ImageFolder
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.pretrain.train import main
from tests.pretrain.conftest import TINY


def write_two_sizes(root, big=128, small=64):
    """A scene of ``big``² and a tile of ``small``² (red = column index), no masks."""
    for name, size in (("scene", big), ("tile", small)):
        xs = np.broadcast_to(np.arange(size, dtype=np.uint8), (size, size))
        rng = np.random.default_rng(size)
        write_image(root / "A" / f"{name}.png", np.stack([xs, rng.integers(0, 256, (size, size), dtype=np.uint8), xs], -1))
    return root


def test_crops_in_proportion_to_area_read_by_window(tmp_path):
    source = ImageFolder(write_two_sizes(tmp_path, big=128, small=40))
    source.read = None  # whole-image reads are gone: a crop reads its window only
    ds = PseudoMaskDataset(source, num_classes=3, crop_size=32, seed=4)
    assert list(ds.plan.counts) == [16, 2] and len(ds) == 18  # 128²/32² and rint(40²/32²) crops
    assert list(PseudoMaskDataset(source, 3, crop_size=32, crops_per_epoch=9).plan.counts) == [8, 1]
    masks = [np.broadcast_to(np.arange(w, dtype=np.uint8) % 200, (h, w)).copy() for h, w in source.sizes]
    ds.set_masks(masks, generation=0)
    ds.set_epoch(3)
    names = [ds[i]["name"] for i in range(len(ds))]
    assert names == ["scene"] * 16 + ["tile"] * 2
    for index in (5, 17):
        s = ds[index]
        h, w = source.sizes[ds.plan.file_of(index)]
        g = draw_geometry(sample_rng(4, 3, index), h, w, 32)  # the masked mode's seeded crop of sample `index`
        expected = np.full((32, 32), IGNORE_INDEX, np.int64)
        part = masks[ds.plan.file_of(index)][g.top : g.top + 32, g.left : g.left + 32]
        expected[: part.shape[0], : part.shape[1]] = part
        assert torch.equal(s["mask"], torch.from_numpy(expected))
        inside = s["mask"] != IGNORE_INDEX
        assert torch.equal((s["image"][0] * 255).round().long()[inside], s["mask"][inside])  # cut together
        assert (s["image"][:, ~inside] == 0).all()  # padding past the small tile's edge
    with pytest.raises(ValueError, match="pseudo-masks for 2 images"):
        ds.set_masks(masks[:1], generation=0)


def test_pseudo_mode_plans_crops_by_area_and_resumes_exactly(tmp_path):
    root = write_two_sizes(tmp_path / "data")  # 128² and 64², tile 64: 4 + 1 crops by area
    pseudo = ["data.masks=pseudo", f"data.root={root}", "pseudo.clusters=3", "pseudo.pixels_per_image=64",
              "pseudo.window=5", "pseudo.tile=32"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(TINY + pseudo + ["trainer.max_steps=4", f"run.dir={one}"]) == 0
    log = read_jsonl(one / "log.jsonl")
    assert [r["epoch"] for r in log] == [0, 0, 1, 1]  # 5 crops, batch 2: 2 steps per epoch, not 1 (one per image)
    sized = tmp_path / "sized"
    assert main(TINY + pseudo + ["data.crops_per_epoch=6", "trainer.max_steps=4", f"run.dir={sized}"]) == 0
    assert [r["epoch"] for r in read_jsonl(sized / "log.jsonl")] == [0, 0, 0, 1]  # data.crops_per_epoch is honoured
    assert main(TINY + pseudo + ["data.crops_per_epoch=6", "trainer.max_steps=2", f"run.dir={two}"]) == 0
    assert main(TINY + pseudo + ["data.crops_per_epoch=6", "trainer.max_steps=4", f"run.dir={two}",
                                 "trainer.resume=auto"]) == 0  # resumed inside epoch 0, runs into epoch 1
    ta, tb = load_file(sized / "encoder.safetensors")[0], load_file(two / "encoder.safetensors")[0]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert [r["loss"] for r in read_jsonl(sized / "log.jsonl")] == [r["loss"] for r in read_jsonl(two / "log.jsonl")]



@pytest.mark.parametrize("bad", ["pseudo.tile=100", "pseudo.halo=20"])
def test_window_settings_are_checked_before_the_run_starts(tmp_path, bad):
    root = write_two_sizes(tmp_path / "data")
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        main(TINY + ["data.masks=pseudo", f"data.root={root}", bad, f"run.dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()


SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "levir-cd-1024").is_dir() or not (SHARED / "inria-256").is_dir(),
                    reason="real samples not present")
def test_real_images_of_two_sizes_give_crops_by_area(tmp_path):
    # The case of a new user: real 1024² tiles and 256² tiles in one image-only folder, no masks.
    (tmp_path / "A").mkdir()
    for folder in ("levir-cd-1024", "inria-256"):
        for f in sorted((SHARED / folder / "A").iterdir()):
            (tmp_path / "A" / f"{folder}-{f.name}").symlink_to(f)  # linked, never copied
    source = ImageFolder(tmp_path)
    big = sum(h * w == 1024 * 1024 for h, w in source.sizes)
    small = sum(h * w == 256 * 256 for h, w in source.sizes)
    assert big == 3 and small == 8
    ds = PseudoMaskDataset(source, num_classes=6, crop_size=256)
    assert len(ds) == 16 * big + small  # 56 crops: 3 steps of 16, where one crop per image gave 11 crops
    assert sorted(ds.plan.counts.tolist()) == [1] * small + [16] * big


@pytest.mark.parametrize("bad, key", [(dict(clusters=1), "pseudo.clusters"), (dict(clusters=256), "pseudo.clusters"),
                                      (dict(refresh_every=-1), "pseudo.refresh_every"),
                                      (dict(pixels_per_image=0), "pseudo.pixels_per_image"),
                                      (dict(clusters=8, max_pixels=7), "pseudo.max_pixels"),
                                      (dict(tile=0), "pseudo.tile"), (dict(tile=48), "pseudo.tile"),
                                      (dict(halo=-32), "pseudo.halo"), (dict(halo=16), "pseudo.halo")])
def test_pseudo_settings_check_their_values_when_built(bad, key):
    with pytest.raises(ConfigError, match=key):
        PseudoConfig(**bad)
    assert PseudoConfig(clusters=8, max_pixels=8, tile=32, halo=0).max_pixels == 8  # the limits themselves are fine
