"""trainer.compile=true: the compiled SaDL step computes the eager step's loss (CPU, inductor, fp32)."""
import pytest
import torch
import torch._inductor.config

from densechange.engine.runlog import read_jsonl
from densechange.engine.speed import compile_targets
from densechange.pretrain.train import main

# timm's smallest ResNet keeps the first compilation of a fresh machine short (about 30 kernels).
TINY = [
    "data.root=synthetic", "data.synthetic_images=4", "data.tile_size=64", "aug.size=64", "model.init=none",
    "model.backbone=test_resnet", "model.neck_channels=32", "model.proj_hidden=64", "model.proj_dim=32",
    "model.pred_hidden=16", "model.points_per_class=8", "trainer.batch_size=2", "trainer.num_workers=0",
    "trainer.epochs=1", "trainer.log_every=1", "trainer.device=cpu", "trainer.precision=fp32",
]
# Inductor fuses and reorders float operations, so the backbone's sums round differently; over one
# step and the update that follows, the loss may move by a few float32 ulps, far below this.
# Both runs are fp32 whatever the CPU: under bf16 autocast (precision=auto on a CPU with AMX or
# AVX512-BF16) the two paths round differently by about 1e-4.
RTOL = 1e-5
# On a machine whose kernel cache is still empty (every fresh CI machine) compiling this step took 46 s
# with inductor's vectorised C++ kernels and 24 s with its scalar ones. What is tested is the toolkit's
# part: the backbone compiled, forward and backward, giving the eager step's loss; how inductor
# vectorises its kernels is inductor's own concern, so the test compiles the scalar ones.
SCALAR_KERNELS = {"cpp.vec_isa_ok": False}


@pytest.mark.numeric
@pytest.mark.slow
def test_a_compiled_step_gives_the_eager_loss(tmp_path, capsys):
    assert main(TINY + [f"run.dir={tmp_path / 'eager'}"]) == 0
    with torch._inductor.config.patch(SCALAR_KERNELS):
        assert main(TINY + [f"run.dir={tmp_path / 'compiled'}", "trainer.compile=true"]) == 0
    assert "compile=True" in capsys.readouterr().out
    eager, compiled = read_jsonl(tmp_path / "eager" / "log.jsonl"), read_jsonl(tmp_path / "compiled" / "log.jsonl")
    assert [r["step"] for r in eager] == [r["step"] for r in compiled] == [1, 2]  # step 2 follows a compiled backward
    assert [r["precision"] for r in eager + compiled] == ["fp32"] * 4
    for e, c in zip(eager, compiled):
        for term in ("loss", "cons", "push", "syn"):
            assert c[term] == pytest.approx(e[term], rel=RTOL), (e["step"], term)


def test_the_sadl_task_compiles_its_backbone_only():
    from densechange.models import Encoder
    from densechange.pretrain.sadl.model import SaDL

    task = SaDL(Encoder("test_resnet", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3)
    assert compile_targets(task) == [task.encoder.backbone]
    assert compile_targets(torch.nn.Linear(2, 2))[0].__class__ is torch.nn.Linear  # a task without targets: all of it
