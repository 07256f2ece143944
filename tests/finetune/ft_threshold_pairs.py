"""Predictors with known answers and small pairs for the scoring tests (also imported by their worker processes)."""
import torch


class ThresholdPredictor:
    """Predicts "changed" where the dates differ by more than ``threshold`` in band 0; probability ``|A - B|``."""

    window = 64

    def __init__(self, batch_size: int = 4, threshold: float = 0.5) -> None:
        self.batch_size, self.threshold = batch_size, threshold

    def predict_batch(self, a, b):
        diff = (a[:, 0] - b[:, 0]).abs()
        # logits whose softmax gives P(changed) = sigmoid(20 (diff - threshold)): argmax is the threshold
        score = 20 * (diff - self.threshold)
        return {"logits": torch.stack([torch.zeros_like(score), score], 1), "distance": None}


class FirstDatePredictor(ThresholdPredictor):
    """Looks at the first date only: "changed" where its band 0 is bright, whatever the second date shows."""

    def predict_batch(self, a, b):
        return super().predict_batch(a, torch.zeros_like(b))


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
