"""Batch norms folded into convolutions: same outputs (fp32 rounding), refused where a fold would change them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from densechange.engine.folding import fold_batch_norms

pytestmark = pytest.mark.numeric  # folded against unfolded, fp32


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class SharedOutput(Chain):
    """conv2's output also bypasses its norm: folding bn2 would change the sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.bn2(y) + y


def test_a_conv_bn_chain_folds_to_the_same_outputs_in_fp32(randomise_norms):
    model = randomise_norms(Chain())
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    folded, report = fold_batch_norms(model, lambda m: m(x))
    assert (report.folded, report.norms, report.refused) == (2, 2, None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), rtol=0, atol=1e-5)  # fp32 rounding only


def test_a_fold_that_would_change_the_outputs_is_refused(randomise_norms):
    model = randomise_norms(SharedOutput())
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    kept, report = fold_batch_norms(model, lambda m: m(x))
    assert kept is model and report.folded == 0 and "differs" in report.refused


def test_a_training_model_is_not_folded():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(Chain().train(), lambda m: m(torch.rand(1, 3, 8, 8)))
