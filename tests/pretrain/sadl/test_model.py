"""The SaDL task as a whole: points of a class absent from the overlap never reach the heads."""
import pytest
import torch

import densechange.pretrain.sadl.model as sadl_model
from densechange.models import Encoder
from densechange.pretrain.sadl.heads import HeadSpec
from densechange.pretrain.sadl.model import SaDL
from densechange.pretrain.sadl.sampling import PointSpec
from densechange.pretrain.sadl.views import ViewAugment


def _task() -> SaDL:
    torch.manual_seed(0)
    return SaDL(Encoder("test_resnet", neck_channels=32), mean=[0.5] * 3, std=[0.5] * 3,
                points=PointSpec(num_classes=3, points_per_class=4), heads=HeadSpec(32, 16, 8, dropout=0.0),
                augment=ViewAugment(size=64))


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    mask[:, 16:48, 16:48] = 1  # class 2 is absent from both images
    return {"image": torch.rand(2, 3, 64, 64, generator=g), "mask": mask}


def _loss_and_grads(task: SaDL) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    task.zero_grad()
    out = task(_batch(), generator=torch.Generator().manual_seed(7))
    out["loss"].backward()
    return out, [p.grad.clone() for p in task.parameters() if p.grad is not None]


def test_absent_class_points_leave_loss_gradients_and_proj_std_unchanged(monkeypatch):
    task = _task()
    base, base_grads = _loss_and_grads(task)
    drawn: dict[str, torch.Tensor] = {}
    real = sadl_model.sample_class_points

    def moved(mask, region, num_classes, n, generator=None):
        points, valid = real(mask, region, num_classes, n, generator)
        drawn["before"] = points.clone()
        corner = torch.tensor([3.5, 60.5])  # absent-class points go to another pixel: other features, same loss
        points = torch.where(valid[:, :, None, None], points, corner)
        drawn["after"] = points
        return points, valid

    monkeypatch.setattr(sadl_model, "sample_class_points", moved)
    out, grads = _loss_and_grads(task)
    assert not torch.equal(drawn["before"][:, 2], drawn["after"][:, 2])  # the absent points really moved
    for key in ("loss", "cons", "push", "syn", "proj_std"):
        torch.testing.assert_close(out[key], base[key], rtol=0, atol=1e-7)
    assert len(grads) == len(base_grads)
    for g, h in zip(grads, base_grads):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-7)


def test_heads_see_only_points_of_present_classes():
    task = _task()
    valid = torch.tensor([[True, True, False], [True, False, False]])
    kept = task.kept(valid)
    # image 0 keeps classes 0 and 1 (points 0..7), image 1 keeps class 0 (points 12..15)
    assert kept.tolist() == list(range(8)) + list(range(12, 16))
    pts = torch.randn(2, 2, 12, task.encoder.out_channels)
    z, q = task.heads(pts, kept)
    assert z.shape == (2, 2, 12, 16) and q.shape == (2, 2, 12, 16)
    assert (z[:, 0, 8:] == 0).all() and (z[:, 1, :4] != 0).any() and (z[:, 1, 4:] == 0).all()
    nothing = task.kept(torch.zeros(2, 3, dtype=torch.bool))
    assert nothing.numel() == 24  # BatchNorm needs rows; every term is masked out anyway


def test_statistics_must_fit_the_encoders_bands():
    from densechange.engine.errors import TOOLKIT_ERRORS
    from densechange.models import ModelError

    with pytest.raises(ModelError, match="1 / 1 values but the encoder takes data.in_chans=3") as caught:
        SaDL(Encoder("test_resnet", neck_channels=8), mean=[0.5], std=[0.5])
    assert isinstance(caught.value, TOOLKIT_ERRORS)  # a user's mistake: one paragraph at the command line
    with pytest.raises(ModelError, match="std must be positive"):
        SaDL(Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5, 0.0, 0.5])
