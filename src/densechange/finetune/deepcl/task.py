"""The DeepCL finetuning task: one batch in, ``{"loss", **terms}`` out, everything on the device.

The engine's training loop calls it without knowing what it trains: the pseudo-change augmentation
(independent photometry per date, random date swap) runs here, batched on the training device,
then the detector and the loss.
"""
from __future__ import annotations

import torch
from torch import nn

from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment
from densechange.finetune.deepcl.losses import ChangeLoss
from densechange.finetune.deepcl.model import ChangeModel


class ChangeTask(nn.Module):
    """Detector + pseudo-change augmentation + loss.

    Args:
        model: the change detector (``self.model`` is what gets saved).
        loss: CE + Dice (+ HSCL when the model has a metric branch).
        augment: training-time pseudo-changes, or None for none.

    Example:
        >>> task = ChangeTask(model, ChangeLoss(HardSampleContrastiveLoss()), PseudoChangeAugment())
        >>> out = task({"a": a, "b": b, "label": label}, generator=torch.Generator().manual_seed(0))
        >>> out["loss"].backward()
    """

    def __init__(self, model: ChangeModel, loss: ChangeLoss, augment: PseudoChangeAugment | None = None) -> None:
        super().__init__()
        self.model, self.loss, self.augment = model, loss, augment

    def compile_targets(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the encoder's backbone, the bulk of the step's FLOPs.

        The decoder is left eager so that validation, which runs the model in eval mode on windows
        of other batch sizes, recompiles only the backbone.
        """
        return [self.model.encoder.backbone]

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        a, b, label = batch["a"].float(), batch["b"].float(), batch["label"]
        if self.augment is not None:
            a, b = self.augment(a, b, generator)
        out = self.model(a, b)
        terms = self.loss(out["logits"], label, out["distance"])
        if out["distance"] is not None:
            terms["distance_mean"] = out["distance"].detach().float().mean()
        return terms
