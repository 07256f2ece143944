"""Sliding-window prediction: stitched windows reproduce the whole-image prediction."""
import pytest
import torch
from torch import nn

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.scene import Scene
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowSettings, edge_weight, window_starts


class LocalNet(nn.Module):
    """Two 3x3 convs on both dates: the output at a pixel sees a 5x5 neighbourhood (radius 2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))

    def forward(self, a, b):
        out = self.body(torch.cat([a, b], 1))
        return {"logits": out[:, :2], "distance": out[:, 2:].abs()}


class Recorder(Predictor):
    """A network behind the predictor contract (stride ``align``), recording the size of every window batch."""

    in_chans, has_distance = 3, True

    def __init__(self, net, windows, align=1):
        self.net, self.windows, self.align, self.batches = net, windows, align, []
        self.device = torch.device("cpu")

    @property
    def stride(self):
        return self.align

    @torch.no_grad()
    def forward_windows(self, a, b):
        self.batches.append(a.shape[0])
        return self.net(a, b)


def pair(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g), torch.rand(3, h, w, generator=g)


@pytest.mark.numeric
@torch.no_grad()
def test_windows_equal_whole_image_on_1024():
    net = LocalNet().eval()
    a, b = pair(1024, 1024)
    whole = net(a[None], b[None])
    fn = Recorder(net, WindowSettings(256, 64, 4, 8))
    out = fn(a, b)
    assert out["logits"].shape == (2, 1024, 1024) and out["distance"].shape == (1024, 1024)
    inner = (slice(8, -8), slice(8, -8))  # fp32 below: windows against the whole image, other convolution shapes
    assert torch.allclose(out["logits"][:, inner[0], inner[1]], whole["logits"][0][:, inner[0], inner[1]], atol=1e-5)
    assert torch.allclose(out["distance"][inner], whole["distance"][0, 0][inner], atol=1e-5)
    # image borders are image borders in both predictions, so they agree there too
    assert torch.allclose(out["logits"], whole["logits"][0], atol=1e-5)
    # 5 x 5 windows of 256 at stride 192, never more than 8 per forward pass
    assert sum(fn.batches) == 25 and max(fn.batches) <= 8 and len(fn.batches) == 4


@pytest.mark.numeric
@torch.no_grad()
def test_without_dead_margin_the_seams_show():
    net = LocalNet().eval()
    a, b = pair(512, 512, seed=1)
    whole = net(a[None], b[None])["logits"][0]
    out = Recorder(net, WindowSettings(128, 16, 0, 4))(a, b)
    assert not torch.allclose(out["logits"], whole, atol=1e-5)


@pytest.mark.numeric
@torch.no_grad()
def test_odd_and_small_sizes():
    net = LocalNet().eval()
    for h, w in ((301, 517), (40, 90)):
        a, b = pair(h, w, seed=2)
        fn = Recorder(net, WindowSettings(128, 32, 4, 3))
        out = next(fn.blocks(Scene.in_memory(a, b, fn.windows, fn.stride))).outputs  # the windows' path at any size
        assert out["logits"].shape == (2, h, w)
        assert torch.allclose(out["logits"], net(a[None], b[None])["logits"][0], atol=1e-5)
        assert max(fn.batches) <= 3
    # an image smaller than the window is one window of (aligned, edge-padded) image size
    a, b = pair(40, 90)
    fn = Recorder(net, WindowSettings(128, 32, 4), align=32)
    next(fn.blocks(Scene.in_memory(a, b, fn.windows, fn.stride)))
    assert fn.batches == [1]


def test_window_starts_cover_the_image():
    assert window_starts(1024, 256, 192) == [0, 192, 384, 576, 768]
    assert window_starts(1000, 256, 192) == [0, 192, 384, 576, 744]
    assert window_starts(256, 256, 192) == [0]


def test_edge_weight_is_zero_in_the_margin_and_one_at_image_borders():
    w = edge_weight(16, inner_start=True, inner_end=False, margin=3, ramp=4)
    assert w[:3].tolist() == [0, 0, 0]
    assert w[3:7].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert (w[7:] == 1).all()
    assert (edge_weight(16, False, False, margin=3, ramp=4) == 1).all()


def test_bad_window_settings_are_named():
    with pytest.raises(ValueError, match="multiple of 32"):
        WindowSettings(250, 64, 8, 8).check(align=32)
    with pytest.raises(ValueError, match="overlap"):
        WindowSettings(256, 256, 8, 8).check()
    with pytest.raises(ValueError, match="twice the margin"):
        WindowSettings(256, 16, 8, 8).check()
    with pytest.raises(ValueError, match="batch size"):
        WindowSettings(256, 64, 8, 0).check()
    a, b = pair(64, 64)
    with pytest.raises(ValueError, match="one shape"):
        Scene.in_memory(a, b[:, :32], WindowSettings(32, 8, 2), 1)


def test_window_settings_that_would_leave_unweighted_pixels_are_rejected():
    with pytest.raises(ValueError, match="network stride"):
        WindowSettings(64, 50, 20, 4).check(align=32)
    WindowSettings(256, 64, 8, 4).check(align=32)
    DEFAULT_WINDOWS.check(align=32)


def test_default_window_batches_are_sized_for_the_device():
    """A CPU runs 2 x 256² pixels a batch (oneDNN slows per window in larger ones), a GPU 8 x 256²."""
    from densechange.finetune.inference.windows import batch_for

    assert [batch_for(w) for w in (128, 256, 512, 1024)] == [8, 2, 1, 1]
    assert [batch_for(w, "cuda") for w in (256, 512, 1024)] == [8, 2, 1]
    assert batch_for(256, torch.device("cpu")) == 2
    # the default window (512, batch sized per device): images smaller than a window are batched by their pixels,
    # so 128² pairs go 8 at a time on a CPU, as many pixels as one 512² window
    assert DEFAULT_WINDOWS == WindowSettings(512, 64, 8, None)
    assert [DEFAULT_WINDOWS.batch(s, s) for s in (128, 256, 512)] == [8, 2, 1]
    assert [DEFAULT_WINDOWS.batch(s, s, "cuda") for s in (128, 256, 512)] == [32, 8, 2]
    assert WindowSettings(batch_size=3).batch(128, 128, "cuda") == 3  # a batch size given is kept


@torch.no_grad()
def test_pairs_smaller_than_the_default_window_are_batched_whole():
    """Synthetic 128 px pairs at the default window: one forward pass of 8 whole images, each its own prediction."""
    net = LocalNet().eval()
    fn = Recorder(net, DEFAULT_WINDOWS, align=32)
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(10, 3, 128, 128, generator=g), torch.rand(10, 3, 128, 128, generator=g)
    out = fn.predict_batch(a, b)
    assert fn.batches == [8, 2] and out["logits"].shape == (10, 2, 128, 128)
    assert torch.allclose(out["logits"], net(a, b)["logits"], atol=1e-5)  # fp32
    assert torch.allclose(fn(a[3], b[3])["logits"], out["logits"][3], atol=1e-5)
