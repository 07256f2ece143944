"""What a pretraining run checks at every epoch end: collapse, probe scores, pseudo-mask refresh.

:class:`EpochEnd` is the ``evaluate`` callable of :func:`densechange.engine.loop.fit`; the loop writes
the dict it returns to ``metrics.jsonl``. It runs on every rank, in this order:

1. **Collapse monitor**: the epoch mean of ``proj_std``, the mean per-channel standard deviation
   of the L2-normalised projections that the SaDL task returns at each step. Healthy values are
   near ``1 / sqrt(proj_dim)``; a SimSiam-style collapse drives them to 0, and a
   :class:`CollapseWarning` is issued below ``collapse_warn / sqrt(proj_dim)``. The record says
   whether it was (``collapse_warning`` 1 or 0), so the warning is a curve too.
2. **Probe** (every ``probe.every`` epochs, when ``probe.data`` is set): kNN and k-means scores of
   the encoder on a labelled held-out set, computed on rank 0 and broadcast; or, with
   ``probe.task=change``, change F1 and AUROC of a head fitted on change pairs.
3. **Pseudo-mask refresh** (``data.masks=pseudo``): see :mod:`densechange.pretrain.pseudo.refresh`.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from densechange.engine.distributed import all_reduce_sum

from densechange.pretrain.probe.epoch import EpochChangeProbe, EpochProbe
from densechange.pretrain.pseudo.refresh import PseudoRefresher

__all__ = ["CollapseWarning", "CollapseMonitor", "EpochEnd"]


class CollapseWarning(UserWarning):
    """The projections of a pretraining run are collapsing towards a constant."""


class CollapseMonitor:
    """Accumulates the ``proj_std`` term of every training forward of ``task`` (a forward hook).

    Only training-mode forwards count. :meth:`epoch_value` averages over the epoch and over ranks.
    """

    def __init__(self, task: nn.Module, proj_dim: int, warn_fraction: float = 0.1) -> None:
        self.reference = 1.0 / math.sqrt(proj_dim)
        self.threshold = warn_fraction * self.reference
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._handle = task.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if module.training and isinstance(output, dict) and "proj_std" in output:
            value = output["proj_std"].detach().float()
            self._sum = value if self._sum is None else self._sum + value
            self._count += 1

    def epoch_value(self) -> float | None:
        """Mean ``proj_std`` since the last call (all ranks), then reset; None when no step ran."""
        if self._sum is None:
            return None
        totals = all_reduce_sum(torch.stack([self._sum, self._sum.new_tensor(float(self._count))]))
        self._sum, self._count = None, 0
        return float(totals[0] / totals[1])

    def close(self) -> None:
        self._handle.remove()


class EpochEnd:
    """The per-epoch ``evaluate`` of a pretraining run (see the module docstring)."""

    def __init__(self, monitor: CollapseMonitor, probe: EpochProbe | EpochChangeProbe | None = None,
                 pseudo: PseudoRefresher | None = None, is_main: bool = True) -> None:
        self.monitor, self.probe, self.pseudo, self.is_main = monitor, probe, pseudo, is_main

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        std = self.monitor.epoch_value()
        if std is not None:
            collapsing = std < self.monitor.threshold
            metrics.update(proj_std=std, proj_std_reference=self.monitor.reference, collapse_warning=float(collapsing))
            if collapsing and self.is_main:
                warnings.warn(
                    f"epoch {epoch}: proj_std={std:.5f} is below {self.monitor.threshold:.5f} "
                    f"({self.monitor.threshold / self.monitor.reference:.2g} of the healthy 1/sqrt(proj_dim)="
                    f"{self.monitor.reference:.4f}); the projections are collapsing. Lower trainer.optim.lr, "
                    "check the masks, or raise trainer.batch_size.", CollapseWarning, stacklevel=2)
        if self.probe is not None and self.probe.due(epoch):
            metrics.update(self.probe(model.encoder))  # type: ignore[arg-type]
        if self.pseudo is not None:
            metrics.update(self.pseudo.after_epoch(epoch, model.encoder))  # type: ignore[arg-type]
        return metrics
