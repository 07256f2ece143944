"""How nuisances change a detector's decisions: counts of the clean against the nuisance prediction.

The false-positive rate under nuisances mixes two things: how much a detector calls change at all,
and how many calls the nuisances add. A detector that calls less change when the second date is
blurred gets a *lower* FPR under nuisances, although its decisions moved. Comparing each pixel's
decision on the clean pair with its decision on the nuisance pair isolates the nuisance:

- ``flip_rate``: share of all scored pixels whose decision differs between the clean and the
  nuisance pair (0 for a detector the nuisance does not touch, whatever it calls);
- ``induced_false_alarms``: among unchanged pixels that the clean pair calls unchanged, the share
  that the nuisance pair calls changed (false alarms caused by the nuisance alone);
- ``induced_misses``: among changed pixels that the clean pair finds, the share that the nuisance
  pair misses.

Counts are int64 ``(label, clean, nuisance)`` cubes summed over batches and processes like the
confusion matrix; pixels with the ignore value are left out of every count.
"""
from __future__ import annotations

import torch

from densechange.datasets import IGNORE_INDEX
from densechange.engine.distributed import all_reduce_sum


class FlipCounts:
    """Pixel counts ``(2, 2, 2)`` indexed by label, clean decision, nuisance decision (0 unchanged, 1 changed)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.counts = torch.zeros(2, 2, 2, dtype=torch.int64, device=device)

    def update(self, clean: torch.Tensor, nuisance: torch.Tensor, label: torch.Tensor) -> None:
        """Add the pixels of the clean and nuisance decisions (0/1) against ``label`` (ignore value skipped)."""
        if not clean.shape == nuisance.shape == label.shape:
            raise ValueError(f"clean {tuple(clean.shape)}, nuisance {tuple(nuisance.shape)} and label "
                             f"{tuple(label.shape)} decisions differ in shape")
        valid = label != IGNORE_INDEX
        dev = self.counts.device
        index = label[valid].to(dev).long() * 4 + clean[valid].to(dev).long() * 2 + nuisance[valid].to(dev).long()
        self.counts += torch.bincount(index, minlength=8).view(2, 2, 2)

    def all_reduce(self, device: str | torch.device | None = None) -> "FlipCounts":
        """A new cube of the counts summed over every process; this process's counts stay."""
        reduced = FlipCounts(device=self.counts.device)
        reduced.counts = all_reduce_sum(self.counts.to(device or self.counts.device, copy=True)).to(self.counts.device)
        return reduced


def _share(num: torch.Tensor, den: torch.Tensor) -> float:
    """``num / den``, 0 when there is nothing to count (no pixel can flip)."""
    return float(num / den) if den > 0 else 0.0


def flip_metrics(counts: torch.Tensor) -> dict[str, float]:
    """``flip_rate``, ``induced_false_alarms`` and ``induced_misses`` of a ``(2, 2, 2)`` cube (see the module)."""
    c = counts.double().cpu()
    return {
        "flip_rate": _share(c[:, 0, 1].sum() + c[:, 1, 0].sum(), c.sum()),
        "induced_false_alarms": _share(c[0, 0, 1], c[0, 0].sum()),
        "induced_misses": _share(c[1, 1, 0], c[1, 1].sum()),
    }
