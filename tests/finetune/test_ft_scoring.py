"""Scoring a dataset: batching of full-size samples and sharding over ranks."""
import torch

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.scoring import NuisanceSettings, ScoreSettings, _batches, score_dataset
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.metrics import ConfusionMatrix


def sample(h, w, name):
    return {"a": torch.zeros(3, h, w), "name": name}


class ThresholdPredictor(Predictor):
    """Predicts "changed" where the two dates differ by more than 0.5 in band 0."""

    in_chans, stride, has_distance = 3, 1, False

    def __init__(self, windows=WindowSettings(64, 16, 4, 4)):
        self.windows, self.device = windows, torch.device("cpu")

    def forward_windows(self, a, b):
        changed = (a[:, 0] - b[:, 0]).abs() > 0.5
        return {"logits": torch.stack([~changed, changed], 1).float(), "distance": None}


def test_small_equal_tiles_are_batched_and_large_ones_come_alone():
    samples = [sample(64, 64, "s1"), sample(64, 64, "s2"), sample(64, 64, "s3"), sample(32, 64, "t1"),
               sample(300, 64, "big"), sample(64, 64, "s4")]
    groups = [[s["name"] for s in g] for g in _batches(samples, ThresholdPredictor(WindowSettings(256, 64, 8, 2)))]
    assert groups == [["s1", "s2"], ["s3"], ["t1"], ["big"], ["s4"]]
    # batches sized per device: as many pixels as the predictor runs at once, 2 x 256² on a CPU
    samples = [sample(128, 128, f"m{i}") for i in range(10)] + [sample(256, 256, f"l{i}") for i in range(3)]
    groups = [[s["name"] for s in g] for g in _batches(samples, ThresholdPredictor(WindowSettings(512, 64, 8)))]
    assert [len(g) for g in groups] == [8, 2, 2, 1]


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=5, size=16):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            a, b = torch.rand(3, size, size, generator=g), torch.rand(3, size, size, generator=g)
            label = ((a[0] - b[0]).abs() > 0.5).long()
            label[:2] = 1 - label[:2]  # two wrong rows per image
            label[-1] = -1  # an ignored row
            self.items.append({"a": a, "b": b, "label": label, "name": f"p{i}"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return dict(self.items[i])


def test_shards_sum_to_the_whole_and_nuisances_do_not_depend_on_sharding():
    ds = Pairs()
    settings = ScoreSettings(pseudo_change="all", nuisance=NuisanceSettings(max_shift=1, seed=3))
    whole = score_dataset(ThresholdPredictor(), ds, settings)
    halves = [score_dataset(ThresholdPredictor(), ds, settings, indices=range(r, len(ds), 2)) for r in (0, 1)]
    assert list(whole) == ["clean", "pseudo_change"]
    for name in ("clean", "pseudo_change"):
        assert torch.equal(halves[0][name].matrix + halves[1][name].matrix, whole[name].matrix)
    clean = whole["clean"].matrix
    assert clean.sum() == 5 * 15 * 16  # the ignored row is left out
    assert clean[0, 1] + clean[1, 0] == 5 * 2 * 16  # exactly the two flipped rows are wrong
    assert not torch.equal(whole["pseudo_change"].matrix, clean)
    seen = []
    score_dataset(ThresholdPredictor(), ds, ScoreSettings(), on_sample=lambda s, p: seen.append((s["name"], tuple(p.shape))))
    assert seen == [(f"p{i}", (16, 16)) for i in range(5)]
    assert isinstance(whole["clean"].confusion, ConfusionMatrix)
