"""Predictors with known answers and small pairs for the scoring tests (also imported by their worker processes)."""
import torch

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.scoring import NuisanceSettings, ScoreSettings
from densechange.finetune.inference.windows import WindowSettings


def settings(pseudo_change: str = "none", seed: int = 0, **strengths) -> ScoreSettings:
    """Scoring settings of the rows ``pseudo_change`` names, nuisances of ``strengths`` drawn from ``seed``."""
    return ScoreSettings(pseudo_change=pseudo_change, nuisance=NuisanceSettings(**strengths, seed=seed))


class ThresholdPredictor(Predictor):
    """Predicts "changed" where the dates differ by more than ``threshold`` in band 0; probability ``|A - B|``."""

    in_chans, stride, has_distance = 3, 1, False

    def __init__(self, batch_size: int = 4, threshold: float = 0.5) -> None:
        self.windows, self.device, self.threshold = WindowSettings(64, 16, 4, batch_size), torch.device("cpu"), threshold

    def forward_windows(self, a, b):
        diff = (a[:, 0] - b[:, 0]).abs()
        # logits whose softmax gives P(changed) = sigmoid(20 (diff - threshold)): argmax is the threshold
        score = 20 * (diff - self.threshold)
        return {"logits": torch.stack([torch.zeros_like(score), score], 1), "distance": None}


class FirstDatePredictor(ThresholdPredictor):
    """Looks at the first date only: "changed" where its band 0 is bright, whatever the second date shows."""

    def forward_windows(self, a, b):
        return super().forward_windows(a, torch.zeros_like(b))


class Pairs(torch.utils.data.Dataset):
    """Random pairs whose label is the 0.5 threshold of band 0, with two wrong rows and one ignored row each."""

    def __init__(self, n: int = 5, size: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            a, b = torch.rand(3, size, size, generator=g), torch.rand(3, size, size, generator=g)
            label = ((a[0] - b[0]).abs() > 0.5).long()
            label[:2] = 1 - label[:2]
            label[-1] = -1
            self.items.append({"a": a, "b": b, "label": label, "name": f"p{i}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return dict(self.items[i])
