"""Two processes under torchrun with gloo on CPU: real DDP, checked rank by rank.

The run is the shared ``one_node_run`` (conftest.py): ``densechange pretrain`` through
ddp_probe.py, which records every rank's samples, augmentation draws, weights and file writes.
"""
import json

import pytest

from densechange.checkpoints import load_encoder


@pytest.mark.slow
def test_two_process_ddp(one_node_run):
    run_dir, probe = one_node_run.run, one_node_run.probe
    r0, r1 = (json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0["steps"]) == len(r1["steps"]) == 8  # 16 images / (2 ranks x 2) = 4 steps x 2 epochs
    every = {f"synthetic_{i:05d}" for i in range(16)}
    for epoch in range(2):
        names0 = {n for s in r0["steps"][4 * epoch : 4 * epoch + 4] for n in s["names"]}
        names1 = {n for s in r1["steps"][4 * epoch : 4 * epoch + 4] for n in s["names"]}
        assert len(names0) == len(names1) == 8 and not names0 & names1  # each rank its own half of the images
        assert names0 | names1 == every  # and together every image, once per epoch
    for s0, s1 in zip(r0["steps"], r1["steps"]):
        assert s0["gen"] != s1["gen"]  # different augmentation draws
        assert s0["weights"] == s1["weights"]  # identical weights after every step
    run_files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "log.jsonl", "last.safetensors", "encoder.safetensors"} <= run_files
    assert not [w for w in r1["writes"] if str(run_dir) in w]
    assert [w for w in r0["writes"] if str(run_dir) in w]
    load_encoder(run_dir / "encoder.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["test_vit", "swin_tiny_patch4_window7_224"])
def test_transformers_train_under_torchrun(backbone, launcher, tmp_path, backbone_overrides):
    """DDP with a transformer encoder: every parameter (the ViT's pyramid too) gets its gradient on both ranks."""
    extra = backbone_overrides[backbone]
    launcher.finished(launcher.one_node(tmp_path / "run", tmp_path / "cache", tmp_path / "probe", "model.init=none",
                                        f"model.backbone={backbone}", "trainer.epochs=1", "trainer.max_steps=2", *extra))
    r0, r1 = (json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in (0, 1))
    # DDP finds a parameter without a gradient when the next step starts: two steps show that none is left out
    assert len(r0["steps"]) == len(r1["steps"]) == 2
    assert all(s0["weights"] == s1["weights"] for s0, s1 in zip(r0["steps"], r1["steps"]))
    assert load_encoder(tmp_path / "run" / "encoder.safetensors").backbone_name == backbone
