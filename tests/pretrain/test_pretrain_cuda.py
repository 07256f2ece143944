"""SaDL on a CUDA device: bf16 channels-last steps, compile, faiss on the GPU.

Marked ``cuda``: skipped without a GPU (``bench/gpu_check.sh`` runs them on one).
"""
import numpy as np
import pytest
import torch

from densechange.engine.runlog import read_jsonl
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.search import faiss_gpu_available, knn_label_transfer
from densechange.pretrain.train import main

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TINY = [
    "data.root=synthetic", "data.synthetic_images=8", "data.tile_size=64", "aug.size=64", "model.init=none",
    "model.neck_channels=32", "model.proj_hidden=64", "model.proj_dim=32", "model.pred_hidden=16",
    "model.points_per_class=8", "trainer.batch_size=4", "trainer.num_workers=0", "trainer.epochs=1",
    "trainer.log_every=1", "trainer.device=cuda", "trainer.tf32=false",
]


def losses(run_dir):
    return [r["loss"] for r in read_jsonl(run_dir / "log.jsonl")]


def test_bf16_channels_last_step_matches_fp32(tmp_path):
    assert main(TINY + [f"run.dir={tmp_path / 'fp32'}", "trainer.precision=fp32"]) == 0
    assert main(TINY + [f"run.dir={tmp_path / 'bf16'}", "trainer.precision=bf16", "trainer.channels_last=true"]) == 0
    log = read_jsonl(tmp_path / "bf16" / "log.jsonl")
    assert [r["precision"] for r in log] == ["bf16", "bf16"]
    # bf16 autocast keeps 8 mantissa bits in the network; the loss itself is computed in fp32.
    assert losses(tmp_path / "bf16")[0] == pytest.approx(losses(tmp_path / "fp32")[0], rel=2e-2)


def test_auto_precision_runs_bf16_on_a_bf16_gpu(tmp_path):
    assert main(TINY + [f"run.dir={tmp_path / 'auto'}", "trainer.max_steps=1"]) == 0
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    assert read_jsonl(tmp_path / "auto" / "log.jsonl")[0]["precision"] == expected


def test_compiled_step_gives_the_eager_loss_on_the_gpu(tmp_path):
    fp32 = ["trainer.precision=fp32"]
    assert main(TINY + fp32 + [f"run.dir={tmp_path / 'eager'}"]) == 0
    assert main(TINY + fp32 + [f"run.dir={tmp_path / 'compiled'}", "trainer.compile=true"]) == 0
    for e, c in zip(losses(tmp_path / "eager"), losses(tmp_path / "compiled")):
        assert c == pytest.approx(e, rel=1e-4)  # fused kernels round differently; cudnn picks its own algorithms


@pytest.mark.skipif(not faiss_gpu_available(), reason="faiss-gpu is not installed (make install-gpu)")
@pytest.mark.parametrize("exact_max", [10**6, 500])  # exact and IVF indexes
def test_faiss_gpu_label_transfer_agrees_with_the_cpu(exact_max):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    feats = rng.normal(0, 0.3, (2000, 16)).astype(np.float32)
    feats[np.arange(2000), labels] += 3.0
    images = np.repeat(np.arange(20), 100)
    settings = ProbeConfig(k=10, folds=4, exact_max=exact_max)
    cpu, cpu_index = knn_label_transfer(feats, labels, images, num_classes=3, settings=settings)
    gpu, gpu_index = knn_label_transfer(feats, labels, images, num_classes=3, settings=settings, use_gpu=True)
    assert cpu_index == gpu_index
    assert np.mean(cpu == gpu) > 0.99 and np.mean(gpu == labels) > 0.99
