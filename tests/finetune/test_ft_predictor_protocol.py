"""Both prediction backends, PyTorch and ONNX Runtime, are a Predictor: the one contract of streaming and scoring, same results."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from densechange.models import Encoder
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.scoring import ScoreSettings, score_dataset
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.onnx.runtime import OnnxPredictor
from tests.tolerances import ONNX_FP32_ATOL, decision_ties

ONNX_READY = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
WINDOWS = WindowSettings(64, 16, 4, 2)


def contract_members() -> set[str]:
    """The attributes, properties and methods :class:`Predictor` declares."""
    methods = {name for name, value in vars(Predictor).items()
               if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    return set(Predictor.__annotations__) | methods


def small_model() -> ChangeModel:
    torch.manual_seed(0)
    return ChangeModel(Encoder("resnet18", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3, heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> dict[str, Predictor]:
    """The same weights behind both backends (ONNX Runtime only where the onnx extra is installed)."""
    model = small_model()
    found: dict[str, Predictor] = {"torch": ChangePredictor(model, WINDOWS)}
    if ONNX_READY:
        from densechange.finetune.onnx.export import export_checkpoint

        folder = tmp_path_factory.mktemp("backends")
        save_change_model(folder / "model.safetensors", model)
        export_checkpoint(folder / "model.safetensors", folder / "model.onnx", window=64, overlap=16, margin=4,
                          check_sizes=[(1, 64, 64)])
        found["onnx"] = OnnxPredictor.from_file(folder / "model.onnx", device="cpu", size=64, overlap=16, margin=4,
                                                batch_size=2)
    return found


def test_the_contract_names_what_streaming_and_scoring_use():
    assert contract_members() == {"windows", "device", "in_chans", "stride", "has_distance", "forward_windows", "batch",
                                  "predict_batch", "blocks"}
    assert Predictor.__abstractmethods__ == {"in_chans", "stride", "has_distance", "forward_windows"}  # what a backend says


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=pytest.mark.skipif(
    not ONNX_READY, reason="the onnx extra (onnx, onnxruntime) is not installed"))])
def test_each_backend_is_a_predictor(backends, backend):
    predictor = backends[backend]
    assert isinstance(predictor, Predictor)
    assert all(hasattr(predictor, name) for name in contract_members())
    assert (predictor.in_chans, predictor.stride, predictor.has_distance) == (3, 32, True)
    assert predictor.windows == WINDOWS and predictor.batch(48, 56) == 2


@pytest.mark.numeric
@pytest.mark.skipif(not ONNX_READY, reason="the onnx extra (onnx, onnxruntime) is not installed")
def test_onnx_predicts_batches_and_scores_a_dataset_like_pytorch(backends):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, 48, 56, generator=g), torch.rand(3, 3, 48, 56, generator=g)  # padded to the stride
    expected, got = backends["torch"].predict_batch(a, b), backends["onnx"].predict_batch(a, b)
    assert got["logits"].shape == (3, 2, 48, 56) and got["distance"].shape == (3, 48, 56)
    assert (got["logits"] - expected["logits"]).abs().max() <= ONNX_FP32_ATOL
    assert (got["distance"] - expected["distance"]).abs().max() <= ONNX_FP32_ATOL

    big_a, big_b = torch.rand(3, 100, 90, generator=g), torch.rand(3, 100, 90, generator=g)  # through windows
    windowed = {name: p(big_a, big_b)["logits"] for name, p in backends.items()}
    assert (windowed["onnx"] - windowed["torch"]).abs().max() <= ONNX_FP32_ATOL

    labels = (torch.rand(4, 48, 56, generator=g) < 0.3).long()
    pairs = [{"a": a[i % 3], "b": b[i % 3], "label": labels[i], "name": f"p{i}"} for i in range(4)]
    matrices = {name: score_dataset(p, pairs, ScoreSettings())["clean"].matrix for name, p in backends.items()}
    assert matrices["onnx"].sum() == 4 * 48 * 56
    # only pixels whose two logits tie within the tolerance may be decided the other way (each moves two counts)
    tied = sum(int(decision_ties(expected["logits"][i % 3].flatten(1).T, ONNX_FP32_ATOL).sum()) for i in range(4))
    assert (matrices["onnx"] - matrices["torch"]).abs().sum() <= 2 * tied
