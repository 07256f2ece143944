"""End-to-end pretraining runs: exact resume, crash safety, bad input, real data, bf16 where it is native."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import load_encoder, load_file
from densechange.engine.commands import main as densechange
from densechange.engine.precision import native_precisions
from densechange.engine.runlog import read_jsonl
from densechange.pretrain.train import main

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CONSOLE_SCRIPT = Path(sys.executable).parent / "densechange"


def run(overrides, tmp, name, *extra):
    d = tmp / name
    assert main(overrides + [f"run.dir={d}", *extra]) == 0
    return d


def encoder_tensors(run_dir):
    tensors, meta = load_file(run_dir / "encoder.safetensors")
    assert meta["kind"] == "encoder"
    return tensors


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_continues_exactly(pretrain_run, pretrain_overrides, tmp_path):
    two = run(pretrain_overrides, tmp_path, "two", "trainer.max_steps=2")
    run(pretrain_overrides, tmp_path, "two", "trainer.max_steps=4", "trainer.resume=auto")  # 3 steps per epoch: crosses an epoch
    assert_same(encoder_tensors(pretrain_run), encoder_tensors(two))
    log1, log2 = read_jsonl(pretrain_run / "log.jsonl"), read_jsonl(two / "log.jsonl")
    assert [r["step"] for r in log1] == [r["step"] for r in log2] == [1, 2, 3, 4]
    assert [r["loss"] for r in log1] == [r["loss"] for r in log2]
    assert all(set(r) >= {"step", "epoch", "loss", "cons", "push", "syn", "lr", "images_per_s"} for r in log1)
    assert [r["precision"] for r in log1] == ["fp32"] * 4
    assert (pretrain_run / "config.yaml").read_text() and (pretrain_run / "last.safetensors").exists()


def test_crash_keeps_last_checkpoint_and_resume_matches(pretrain_run, pretrain_overrides, tmp_path, monkeypatch):
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
        run(pretrain_overrides, tmp_path, "crash", "trainer.max_steps=4", "trainer.save_every=1")
    monkeypatch.setattr(model_mod.SaDL, "forward", original)
    crash = tmp_path / "crash"
    _, meta = load_file(crash / "last.safetensors")
    assert meta["loop"]["step"] == 3 and not list(crash.glob("*.tmp*"))
    run(pretrain_overrides, tmp_path, "crash", "trainer.max_steps=4", "trainer.resume=auto")
    assert_same(encoder_tensors(pretrain_run), encoder_tensors(crash))


def test_existing_run_is_not_overwritten(pretrain_run, pretrain_overrides, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(pretrain_run, d)
    kept = {name: (d / name).read_bytes() for name in ("last.safetensors", "encoder.safetensors", "log.jsonl",
                                                       "config.yaml")}
    with pytest.raises(ValueError, match="trainer.resume=auto"):
        main(pretrain_overrides + [f"run.dir={d}", "trainer.max_steps=1"])
    assert {name: (d / name).read_bytes() for name in kept} == kept


def test_encoder_checkpoint_reloads_bit_exactly(pretrain_run):
    enc = load_encoder(pretrain_run / "encoder.safetensors")
    state, _ = load_file(pretrain_run / "last.safetensors")
    for k, v in enc.state_dict().items():
        assert torch.equal(v, state[f"model.encoder.{k}"]), k
    meta = json.loads(json.dumps(load_file(pretrain_run / "encoder.safetensors")[1]))
    assert meta["backbone"] == "test_resnet" and meta["in_chans"] == 3 and meta["mean"] == [0.5] * 3
    assert meta["config"]["trainer"]["max_steps"] == 4 and meta["steps"] == 4


def user_error(argv, capsys) -> str:
    """``densechange ARGV`` in this process: exit status 2 and one paragraph on stderr."""
    with pytest.raises(SystemExit) as stop:
        densechange(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "config, args, message",
    [
        ("demo", ["trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
        ("sadl_resnet18", [], "'data.root' is required"),
        ("demo", ["data.root=/nonexistent/folder"], "/nonexistent/folder"),
        ("demo", ["model.backbone=no_such_net"], "no_such_net"),
    ],
)
def test_bad_input_is_one_paragraph(tmp_path, capsys, config, args, message):
    err = user_error(["pretrain", "--config", str(REPO / f"configs/pretrain/{config}.yaml"), *args,
                      f"run.dir={tmp_path / 'run'}"], capsys)
    assert message in err
    assert not (tmp_path / "run").exists()  # a bad command leaves no run folder behind


def test_empty_dataset_folder(tmp_path, capsys):
    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    err = user_error(["pretrain", "--config", str(REPO / "configs/pretrain/demo.yaml"), f"data.root={tmp_path}",
                      f"run.dir={tmp_path / 'run'}"], capsys)
    assert str(tmp_path) in err


@pytest.mark.parametrize("folder", ["inria-256", "spacenet-rio"])
def test_real_data_short_run(pretrain_overrides, tmp_path, folder):
    root = SHARED / folder
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    extra = [a for a in pretrain_overrides if not a.startswith(("data.root", "data.synthetic", "data.tile_size", "aug.size"))]
    d = tmp_path / "run"
    assert main(extra + [f"data.root={root}", "data.tile_size=128", "aug.size=96", "trainer.max_steps=2", f"run.dir={d}"]) == 0
    log = read_jsonl(d / "log.jsonl")
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    for r in log:  # the logged loss is the objective w_cons L_cons + w_push L_push + w_syn L_syn (1, 1, 1/2)
        assert r["loss"] == pytest.approx(r["cons"] + r["push"] + 0.5 * r["syn"], rel=1e-6)
    assert log[0]["push"] > 0 and log[0]["syn"] > 0  # the masks' buildings reached the loss (both are 0 without them)
    load_encoder(d / "encoder.safetensors")


def test_init_from_a_user_registry_entry(pretrain_overrides, tmp_path, monkeypatch):
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
    cfg = load_config(PretrainConfig, None, pretrain_overrides + ["model.init=my_resnet18", f"model.registry=[{reg}]"], choices=CHOICES)
    task, mean, std = build_task(cfg, 2)
    assert mean == [0.1, 0.2, 0.3] and std == [0.4, 0.5, 0.6]
    assert torch.equal(task.encoder.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(task.encoder.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    # the config can still override the entry's normalisation
    cfg = load_config(PretrainConfig, None, pretrain_overrides + ["model.init=my_resnet18", f"model.registry=[{reg}]", "data.mean=[0,0,0]"], choices=CHOICES)
    assert build_task(cfg, 2)[1] == [0.0, 0.0, 0.0]


def test_non_finite_loss_stops_before_saving(pretrain_overrides, tmp_path, monkeypatch):
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
        main(pretrain_overrides + [f"run.dir={d}", "trainer.max_steps=4", "trainer.save_every=1", "trainer.log_every=10"])
    _, meta = load_file(d / "last.safetensors")
    assert meta["loop"]["step"] == 1  # the step-1 state survives; nothing after the NaN was written


def test_reference_recipe_runs_as_the_docs_say(tmp_path):
    """The docs' pretraining command with the shipped reference config (offline: random init, 1 small step).

    The suite's one ``densechange pretrain`` in a process of its own, through the console script.
    """
    root = SHARED / "inria-256"
    data = str(root) if root.is_dir() else "synthetic"
    res = subprocess.run([str(CONSOLE_SCRIPT), "pretrain", "--config", "configs/pretrain/sadl_resnet18.yaml",
                          f"data.root={data}", "trainer.epochs=200", "model.init=none", "trainer.batch_size=2",
                          "trainer.max_steps=1", "trainer.num_workers=0", "trainer.precision=fp32",
                          f"run.dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert len(log) == 1 and 3.0 < log[0]["loss"] < 6.0  # about 4.4 at random init (DESIGN section 3)
    assert load_file(tmp_path / "run" / "encoder.safetensors")[1]["backbone"] == "resnet18"


@pytest.mark.skipif("bf16" not in native_precisions(torch.device("cpu")),
                    reason="this CPU has no native bf16 (AMX or AVX512-BF16): bf16 would be emulated, several times "
                           "slower than fp32; the fp32 runs of the suite cover this CPU")
def test_bf16_step_on_a_cpu_with_native_bf16(pretrain_run, pretrain_overrides, tmp_path):
    """precision=bf16 where the CPU runs it natively: the run logs bf16 and its first loss is the fp32 one."""
    d = run(pretrain_overrides, tmp_path, "bf16", "trainer.precision=bf16", "trainer.max_steps=2")
    bf16, fp32 = read_jsonl(d / "log.jsonl"), read_jsonl(pretrain_run / "log.jsonl")
    assert [r["precision"] for r in bf16] == ["bf16", "bf16"]
    # bf16 autocast keeps 8 mantissa bits in the network; the loss itself is computed in fp32.
    assert bf16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=2e-2)
    assert bf16[0]["loss"] != fp32[0]["loss"]  # the network did run in bf16
    load_encoder(d / "encoder.safetensors")
