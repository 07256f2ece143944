"""Whole scenes (WHU-CD's layout) are scored by window, with the counts of the scene held whole.

Validation and ``densechange evaluate`` score a scene layout's pairs through
:func:`densechange.finetune.inference.scoring.score_dataset`; a streamed scene must give the very
confusion counts of the whole-scene path, and never be read whole.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import rasterio
import torch

from densechange.datasets import ChangeDataset, ChangeOptions, DatasetError
from densechange.datasets.readers import change as change_module
from densechange.finetune.inference import scene as scene_module
from densechange.finetune.inference import scoring
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.windows import WindowSettings
from tests.tolerances import bin_moves, decision_ties

FP32_BLOCK_ATOL = 1e-6  # fp32 logits of the 3x3 mean below, from windows blended by block or over the whole scene
CLEAN = scoring.ScoreSettings()  # the clean row alone


@pytest.fixture
def scene(make_dataset) -> ChangeDataset:
    """WHU-CD's 96x128 training scene, its 2012 date with a no-data band along the top (value 0)."""
    fx = make_dataset("whu-cd")
    dataset = ChangeDataset(fx.root, "train")
    with rasterio.open(dataset.paths[0][0], "r+") as dst:
        dst.nodata = 0
        dst.write(np.zeros((3, 8, 128), np.uint8), window=rasterio.windows.Window(0, 0, 128, 8))
    return dataset


class LocalDifference(torch.nn.Module):
    """A change model of the size of the problem: changed where the 3x3 mean of |A - B| passes ``threshold``.

    Its decisions vary pixel by pixel, so counts that agree mean that the windows, blocks, labels and
    no-data line up; a pretrained-free ``ChangeModel`` decides almost the same everywhere.
    """

    stride, in_chans, metric_head = 32, 3, None

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((1, 3, 3, 3), 1 / 27))
        self.threshold = 0.0

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor | None]:
        score = torch.nn.functional.conv2d((a - b).abs(), self.weight, padding=1) - self.threshold
        return {"logits": torch.cat([torch.zeros_like(score), score], 1), "distance": None}


def predictor(scene: ChangeDataset) -> ChangePredictor:
    """The detector with its threshold in the widest gap of the middle half of the scene's scores, far from every
    pixel's score (so rounding flips no decision), and changed about half the scene."""
    model = LocalDifference()
    net = ChangePredictor(model, WindowSettings(64, 32, 8, 4))
    sample = scene[0]
    middle = net(sample["a"], sample["b"])["logits"][1].flatten().sort().values[96 * 128 // 4: 3 * 96 * 128 // 4]
    gap = int((middle[1:] - middle[:-1]).argmax())
    assert middle[gap + 1] - middle[gap] > 1e-4
    model.threshold = float(middle[gap] + middle[gap + 1]) / 2
    return net


@pytest.mark.numeric
def test_a_streamed_scene_has_the_confusion_counts_of_the_whole_scene(scene: ChangeDataset, monkeypatch) -> None:
    assert scene.streamed(0) and not ChangeDataset(scene.root, "train", ChangeOptions(crop_size=32)).streamed(0)
    net = predictor(scene)
    sample = scene[0]
    logits = net(sample["a"], sample["b"])["logits"]  # the whole scene's windows, as the held path runs them
    with monkeypatch.context() as whole_path:
        whole_path.setattr(ChangeDataset, "streamed", lambda self, index: False)
        held = scoring.score_dataset(net, scene, CLEAN)["clean"]

    def whole_read(*args, **kwargs):
        raise AssertionError("a streamed scene was read whole")

    monkeypatch.setattr(change_module, "read_image_valid", whole_read)
    monkeypatch.setattr(change_module, "read_label", whole_read)
    monkeypatch.setattr(ChangeDataset, "__getitem__", whole_read)
    windows: list[tuple[int, int, int, int]] = []
    real = ChangeDataset.scene_labels

    @contextlib.contextmanager
    def recording(self, file: int, height: int, width: int):
        with real(self, file, height, width) as read:
            yield lambda *window: (windows.append((file, *window)), read(*window))[1]

    monkeypatch.setattr(ChangeDataset, "scene_labels", recording)
    monkeypatch.setattr(scene_module, "block_windows", lambda stride: 1)  # one window row and column per block
    streamed = scoring.score_dataset(net, scene, CLEAN)["clean"]
    covered = np.zeros((96, 128), int)
    for file, top, left, height, width in windows:
        assert file == 0
        covered[top:top + height, left:left + width] += 1
    assert len(windows) == 2 * 3 and (covered == 1).all()  # blocks of one window row: rows 0-32, 32-96; 3 columns
    assert not decision_ties(logits.flatten(1).T, FP32_BLOCK_ATOL).any()  # the threshold sits in a gap: no tie
    assert torch.equal(streamed.matrix, held.matrix)
    assert int(held.matrix.sum()) == 96 * 128 - 8 * 128  # the no-data rows are ignored, the rest all counted
    truth = torch.from_numpy(scene.label_window(0, 8, 0, 88, 128))
    assert int(held.matrix[1].sum()) == int((truth == 1).sum()) > 0  # the scene's changed pixels, by row of the matrix
    assert min(held.matrix[0, 0], held.matrix[0, 1], held.matrix[1, 1]) > 100  # decisions that vary over the scene
    assert torch.equal(streamed.histogram.counts.sum(1), held.histogram.counts.sum(1))
    # probabilities equal up to rounding: only those that close to a bin edge may fall into the next bin
    _, up, down = bin_moves(torch.softmax(logits, 0)[1].flatten(), FP32_BLOCK_ATOL)
    assert (streamed.histogram.counts - held.histogram.counts).abs().sum() <= 2 * int((up | down).sum())


def test_nuisances_on_a_streamed_scene_are_drawn_once_and_counted_per_pixel(scene: ChangeDataset, monkeypatch) -> None:
    net = predictor(scene)
    monkeypatch.setattr(scene_module, "block_windows", lambda stride: 1)
    settings = scoring.ScoreSettings(pseudo_change="each", nuisance=scoring.NuisanceSettings(max_shift=1, seed=3))
    first = scoring.score_dataset(net, scene, settings)
    again = scoring.score_dataset(net, scene, settings)
    counted = int(first["clean"].matrix.sum())
    assert counted == 96 * 128 - 8 * 128
    for name in ("pseudo_change", "pseudo_change_colour", "pseudo_change_blur", "pseudo_change_shift"):
        assert torch.equal(first[name].matrix, again[name].matrix)  # seeded: the same draw every run
        assert int(first[name].matrix.sum()) == int(first[name].flips.counts.sum()) == counted
        # flips compare each pixel's nuisance decision with its clean one: their clean marginal is the clean decisions
        np.testing.assert_array_equal(first[name].flips.counts.sum(2).numpy(), first["clean"].matrix.numpy())
    colour = first["pseudo_change_colour"]
    assert not torch.equal(colour.histogram.counts, first["clean"].histogram.counts)  # the nuisance did change B


def test_a_streamed_scene_label_must_match_its_dates_and_is_decoded_once(scene: ChangeDataset, monkeypatch,
                                                                         tmp_path) -> None:
    net = predictor(scene)
    label = scene.paths[0][2]
    with rasterio.open(label) as src:
        stored, profile = src.read(), src.profile
    profile.update(height=64, width=100)
    with rasterio.open(label, "w", **profile) as dst:  # smaller than its 96x128 dates
        dst.write(stored[:, :64, :100])
    with pytest.raises(DatasetError, match=r"is 64x100 but its images are 96x128: labels must match"):
        scoring.score_dataset(net, scene, CLEAN)
    # a PNG label is a whole-file format: decoded once for the scene, not once per block
    from PIL import Image

    from densechange.datasets.io import raster as raster_module

    png = tmp_path / "label.png"
    Image.fromarray(stored[0]).save(png)  # the original label, as PNG
    scene.paths[0] = (*scene.paths[0][:2], png)
    decoded: list[str] = []
    real = raster_module.read_raster
    monkeypatch.setattr(raster_module, "read_raster", lambda path, **kw: (decoded.append(str(path)), real(path, **kw))[1])
    monkeypatch.setattr(scene_module, "block_windows", lambda stride: 1)  # 6 blocks
    counts = scoring.score_dataset(net, scene, CLEAN)["clean"]
    assert decoded.count(str(png)) == 1 and int(counts.matrix.sum()) == 96 * 128 - 8 * 128
