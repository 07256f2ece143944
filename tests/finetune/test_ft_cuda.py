"""DeepCL on a CUDA device: a bf16 channels-last finetuning step, windowed prediction.

Marked ``cuda``: skipped without a GPU (``bench/gpu_check.sh`` runs them on one).
"""
import pytest
import torch

from densechange.models import Encoder
from densechange.engine.runlog import read_jsonl
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.train import main

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_channels_last_finetuning_step(tiny_overrides, tmp_path):
    base = [o for o in tiny_overrides if not o.startswith("trainer.device")] + ["trainer.device=cuda", "trainer.tf32=false",
                                                                                 "trainer.max_steps=2"]
    assert main(base + [f"run.dir={tmp_path / 'fp32'}", "trainer.precision=fp32"]) == 0
    assert main(base + [f"run.dir={tmp_path / 'bf16'}", "trainer.precision=bf16", "trainer.channels_last=true"]) == 0
    fp32, bf16 = read_jsonl(tmp_path / "fp32" / "log.jsonl"), read_jsonl(tmp_path / "bf16" / "log.jsonl")
    assert [r["precision"] for r in bf16] == ["bf16", "bf16"]
    assert bf16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=3e-2)
    assert (tmp_path / "bf16" / "final.safetensors").exists()


def test_windowed_prediction_on_the_gpu_matches_the_cpu():
    torch.manual_seed(0)
    model = ChangeModel(Encoder("resnet18", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3, heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()
    a, b = torch.rand(3, 200, 300), torch.rand(3, 200, 300)  # larger than one window: stitched from windows
    windows = WindowSettings(128, 32, 8, 4)
    cpu = ChangePredictor(model, windows, device="cpu")(a, b)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    gpu = ChangePredictor(model, windows, device="cuda")(a, b)
    assert gpu["logits"].device.type == "cpu" and gpu["logits"].shape == (2, 200, 300)
    assert torch.allclose(gpu["logits"], cpu["logits"], atol=1e-3)
    assert torch.allclose(gpu["distance"], cpu["distance"], atol=1e-3)
