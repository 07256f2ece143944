"""End-to-end pretraining runs: exact resume, crash safety, bad input, real data."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import load_encoder, load_file
from densechange.engine.runlog import read_jsonl
from densechange.pretrain.train import main

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

TINY = [
    "data.root=synthetic",
    "data.synthetic_images=6",
    "data.tile_size=64",
    "aug.size=64",
    "model.init=none",
    "model.proj_hidden=64",
    "model.proj_dim=32",
    "model.pred_hidden=16",
    "model.points_per_class=8",
    "trainer.batch_size=2",
    "trainer.num_workers=0",
    "trainer.epochs=50",
    "trainer.log_every=1",
]


def run(tmp, name, *extra):
    d = tmp / name
    assert main(TINY + [f"run.dir={d}", *extra]) == 0
    return d


def encoder_tensors(run_dir):
    tensors, meta = load_file(run_dir / "encoder.safetensors")
    assert meta["kind"] == "encoder"
    return tensors


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_continues_exactly(tmp_path):
    one = run(tmp_path, "one", "trainer.max_steps=4")
    two = run(tmp_path, "two", "trainer.max_steps=2")
    run(tmp_path, "two", "trainer.max_steps=4", "trainer.resume=auto")  # 3 steps per epoch: crosses an epoch
    assert_same(encoder_tensors(one), encoder_tensors(two))
    log1, log2 = read_jsonl(one / "log.jsonl"), read_jsonl(two / "log.jsonl")
    assert [r["step"] for r in log2] == [1, 2, 3, 4]
    assert [r["loss"] for r in log1] == [r["loss"] for r in log2]
    assert all(set(r) >= {"step", "epoch", "loss", "cons", "push", "syn", "lr", "images_per_s"} for r in log1)
    assert (one / "config.yaml").read_text() and (one / "last.safetensors").exists()


def test_crash_keeps_last_checkpoint_and_resume_matches(tmp_path, monkeypatch):
    ref = run(tmp_path, "ref", "trainer.max_steps=4")
    import densechange.pretrain.sadl.model as model_mod

    calls = {"n": 0}
    original = model_mod.SaDL.forward

    def crashing(self, batch, generator=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return original(self, batch, generator)

    monkeypatch.setattr(model_mod.SaDL, "forward", crashing)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "crash", "trainer.max_steps=4", "trainer.save_every=1")
    monkeypatch.setattr(model_mod.SaDL, "forward", original)
    crash = tmp_path / "crash"
    _, meta = load_file(crash / "last.safetensors")
    assert meta["loop"]["step"] == 3 and not list(crash.glob("*.tmp*"))
    run(tmp_path, "crash", "trainer.max_steps=4", "trainer.resume=auto")
    assert_same(encoder_tensors(ref), encoder_tensors(crash))


def test_existing_run_is_not_overwritten(tmp_path):
    run(tmp_path, "r", "trainer.max_steps=1")
    with pytest.raises(ValueError, match="trainer.resume=auto"):
        run(tmp_path, "r", "trainer.max_steps=1")


def test_encoder_checkpoint_reloads_bit_exactly(tmp_path):
    d = run(tmp_path, "r", "trainer.max_steps=1")
    enc = load_encoder(d / "encoder.safetensors")
    state, _ = load_file(d / "last.safetensors")
    for k, v in enc.state_dict().items():
        assert torch.equal(v, state[f"model.encoder.{k}"]), k
    meta = json.loads(json.dumps(load_file(d / "encoder.safetensors")[1]))
    assert meta["backbone"] == "resnet18" and meta["in_chans"] == 3 and meta["mean"] == [0.5] * 3
    assert meta["config"]["trainer"]["max_steps"] == 1


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "densechange.pretrain", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300)


@pytest.mark.parametrize(
    "config, args, message",
    [
        ("demo", ["trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
        ("sadl_resnet18", [], "'data.root' is required"),
        ("demo", ["data.root=/nonexistent/folder"], "/nonexistent/folder"),
        ("demo", ["model.backbone=no_such_net"], "no_such_net"),
    ],
)
def test_bad_input_is_one_paragraph(tmp_path, config, args, message):
    res = cli("--config", f"configs/pretrain/{config}.yaml", *args, f"run.dir={tmp_path / 'run'}")
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ")


def test_empty_dataset_folder(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    res = cli("--config", "configs/pretrain/demo.yaml", f"data.root={tmp_path}", f"run.dir={tmp_path / 'run'}")
    assert res.returncode == 2 and "Traceback" not in res.stderr and str(tmp_path) in res.stderr


@pytest.mark.parametrize("folder", ["inria-256", "spacenet-rio"])
def test_real_data_short_run(tmp_path, folder):
    root = SHARED / folder
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    extra = [a for a in TINY if not a.startswith(("data.root", "data.synthetic", "data.tile_size", "aug.size"))]
    d = tmp_path / "run"
    assert main(extra + [f"data.root={root}", "data.tile_size=128", "aug.size=96", "trainer.max_steps=2", f"run.dir={d}"]) == 0
    log = read_jsonl(d / "log.jsonl")
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert 0.0 < log[0]["cons"] <= 4.0 and 0.0 <= log[0]["push"] <= 2.0
    load_encoder(d / "encoder.safetensors")


def test_init_from_a_user_registry_entry(tmp_path, monkeypatch):
    """model.init=NAME with model.registry=[FILE]: downloaded (file://), verified, imported, normalised."""
    import hashlib

    import torchvision

    from densechange.engine.config import load_config
    from densechange.pretrain.config import CHOICES, PretrainConfig
    from densechange.pretrain.train import build_task

    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    pth = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), pth)
    entry = {
        "name": "my_resnet18", "url": pth.as_uri(), "sha256": hashlib.sha256(pth.read_bytes()).hexdigest(),
        "backbone": "resnet18", "in_chans": 3, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6],
        "source": "test", "licence": "MIT", "importer": "torchvision",
    }
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"version": 1, "entries": [entry]}))
    monkeypatch.setenv("DENSECHANGE_CACHE", str(tmp_path / "cache"))
    cfg = load_config(PretrainConfig, None, TINY + ["model.init=my_resnet18", f"model.registry=[{reg}]"], choices=CHOICES)
    task, mean, std = build_task(cfg, 2)
    assert mean == [0.1, 0.2, 0.3] and std == [0.4, 0.5, 0.6]
    assert torch.equal(task.encoder.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(task.encoder.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    # the config can still override the entry's normalisation
    cfg = load_config(PretrainConfig, None, TINY + ["model.init=my_resnet18", f"model.registry=[{reg}]", "data.mean=[0,0,0]"], choices=CHOICES)
    assert build_task(cfg, 2)[1] == [0.0, 0.0, 0.0]


def test_non_finite_loss_stops_before_saving(tmp_path, monkeypatch):
    import densechange.pretrain.sadl.model as model_mod
    from densechange.engine.errors import TrainingError

    original = model_mod.SaDL.forward
    calls = {"n": 0}

    def poisoned(self, batch, generator=None):
        out = original(self, batch, generator)
        calls["n"] += 1
        if calls["n"] == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(model_mod.SaDL, "forward", poisoned)
    d = tmp_path / "nan"
    with pytest.raises(TrainingError, match="non-finite loss"):
        main(TINY + [f"run.dir={d}", "trainer.max_steps=4", "trainer.save_every=1", "trainer.log_every=10"])
    _, meta = load_file(d / "last.safetensors")
    assert meta["loop"]["step"] == 1  # the step-1 state survives; nothing after the NaN was written


def test_reference_recipe_runs_as_the_readme_says(tmp_path):
    """The README's command with the shipped reference config (offline: random init, 1 small step)."""
    root = SHARED / "inria-256"
    data = str(root) if root.is_dir() else "synthetic"
    res = cli("--config", "configs/pretrain/sadl_resnet18.yaml", f"data.root={data}", "trainer.epochs=200",
              "model.init=none", "trainer.batch_size=2", "trainer.max_steps=1", "trainer.num_workers=0",
              f"run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr[-2000:]
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert len(log) == 1 and 3.0 < log[0]["loss"] < 6.0  # about 4.4 at random init (DESIGN section 3)
