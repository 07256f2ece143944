"""Scoring a dataset: batching of full-size samples and sharding over ranks."""
import torch

from densechange.finetune.metrics import ConfusionMatrix
from densechange.finetune.inference.scoring import _batches, score_dataset


def sample(h, w, name):
    return {"a": torch.zeros(3, h, w), "name": name}


def test_small_equal_tiles_are_batched_and_large_ones_come_alone():
    samples = [sample(64, 64, "s1"), sample(64, 64, "s2"), sample(64, 64, "s3"), sample(32, 64, "t1"),
               sample(300, 64, "big"), sample(64, 64, "s4")]
    groups = [[s["name"] for s in g] for g in _batches(samples, batch_size=2, window=256)]
    assert groups == [["s1", "s2"], ["s3"], ["t1"], ["big"], ["s4"]]


class ThresholdPredictor:
    """Predicts "changed" where the two dates differ by more than 0.5 in band 0."""

    batch_size, window = 4, 64

    def predict_batch(self, a, b):
        changed = (a[:, 0] - b[:, 0]).abs() > 0.5
        return {"logits": torch.stack([~changed, changed], 1).float(), "distance": None}


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
    nuisance = {"max_shift": 1}
    whole = score_dataset(ThresholdPredictor(), ds, nuisance=nuisance, seed=3)
    halves = [score_dataset(ThresholdPredictor(), ds, indices=range(r, len(ds), 2), nuisance=nuisance, seed=3)
              for r in (0, 1)]
    for name in ("clean", "pseudo_change"):
        assert torch.equal(halves[0][name].matrix + halves[1][name].matrix, whole[name].matrix)
    clean = whole["clean"].matrix
    assert clean.sum() == 5 * 15 * 16  # the ignored row is left out
    assert clean[0, 1] + clean[1, 0] == 5 * 2 * 16  # exactly the two flipped rows are wrong
    assert not torch.equal(whole["pseudo_change"].matrix, clean)
    seen = []
    score_dataset(ThresholdPredictor(), ds, on_sample=lambda s, p: seen.append((s["name"], tuple(p.shape))))
    assert seen == [(f"p{i}", (16, 16)) for i in range(5)]
    assert isinstance(whole["clean"].confusion, ConfusionMatrix)
