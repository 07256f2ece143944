"""The prediction speed-ups (folded norms, channels-last, inference mode) change outputs by fp32 rounding only."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from densechange.models import Encoder
from densechange.engine.folding import fold_batch_norms
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.windows import WindowSettings

pytestmark = pytest.mark.numeric  # optimised against plain prediction, fp32


@pytest.fixture
def model(randomise_norms) -> ChangeModel:
    """A DeepCL ResNet-18 whose norms hold statistics far from (0, 1), so that a wrong fold shows."""
    torch.manual_seed(0)
    return randomise_norms(ChangeModel(Encoder("resnet18", neck_channels=32), mean=[0.5] * 3, std=[0.5] * 3,
                                       heads=ChangeHeadSpec(decoder_channels=16)), seed=1)


def test_every_norm_of_the_resnet_change_model_folds(model):
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    folded, report = fold_batch_norms(model, lambda m: m(a, b))
    fused_in_place = len(model.decoder.fuse)  # in eval the decoder runs its 1x1 fusing convs as weights, not modules
    assert report.refused is None and report.folded == report.norms - fused_in_place > 20
    with torch.no_grad():
        want, got = model(a, b), folded(a, b)
    for key in ("logits", "distance"):
        assert torch.allclose(got[key], want[key], rtol=0, atol=1e-4), key  # fp32, over 20 folded layers


def test_the_decoder_fuses_levels_without_the_three_part_input_in_eval(model):
    """Eval's split 1x1 convs with the prior on their outputs equal training's conv on [fa, fb, |fa - fb|] * prior."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 3, 96, 64, generator=g), torch.rand(2, 3, 96, 64, generator=g)
    with torch.no_grad():
        split = model(a, b)
        model.decoder.train()  # the trained path; the norms keep their running statistics below
        for m in model.decoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        whole = model(a, b)
    assert torch.allclose(split["logits"], whole["logits"], rtol=0, atol=1e-4)  # fp32


def test_an_optimised_predictor_gives_the_plain_predictions_in_fp32(model):
    windows = WindowSettings(64, 32, 4, 3)
    plain = ChangePredictor(copy.deepcopy(model), windows)
    fast = ChangePredictor(model, windows, optimise=True)
    assert fast.folding.folded == fast.folding.norms - len(fast.model.decoder.fuse) > 20
    assert fast.channels_last and not plain.channels_last
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(3, 150, 170, generator=g), torch.rand(3, 150, 170, generator=g)
    want, got = plain(a, b), fast(a, b)
    for key in ("logits", "distance"):
        assert torch.allclose(got[key], want[key], rtol=0, atol=1e-4), key
