"""Siamese change detectors with the DeepCL metric branch as a switch.

A :class:`ChangeModel` runs one shared encoder (backbone + FPN) on both dates in a single batched
call, then

1. metric branch (``metric_branch=True``): a per-pixel head on the stride-4 level gives unit
   embeddings ``e1``, ``e2`` and the distance map ``D = ||e1 - e2||``, trained by the HSCL loss;
2. segmentation branch: a decoder over both dates' pyramid levels, guided by ``D`` (the prior);
3. a 1x1 classifier to change logits, upsampled to the input size.

``model.name`` picks the decoder (``deepcl``: multi-level with a top-down path; ``siam_diff``: the
plain siamese difference network); ``metric_branch=False`` removes step 1 and the prior, so the
same detector with and without DeepCL differs by one switch.

Example:
    >>> model = ChangeModel(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3)
    >>> out = model(torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256))
    >>> out["logits"].shape, out["distance"].shape
    (torch.Size([2, 2, 256, 256]), torch.Size([2, 1, 64, 64]))
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densechange.checkpoints import build_normalised_encoder

from densechange.models import Encoder
from densechange.models.normalisation import band_statistics
from densechange.engine.errors import ConfigError

from densechange.finetune.deepcl.decoders import DECODERS
from densechange.finetune.deepcl.heads import ChangeHeadSpec, MetricHead, embedding_distance
from densechange.finetune.deepcl.prior import check_prior

MODEL_NAMES = tuple(DECODERS)


class ChangeModel(nn.Module):
    """Siamese encoder, optional metric branch, difference decoder and classifier.

    Args:
        encoder: shared encoder; its pyramid levels feed the decoder.
        name: ``deepcl`` or ``siam_diff`` (the decoder).
        mean, std: per-band input normalisation; inputs are images in ``[0, 1]``.
        metric_branch: add the metric head, the distance map and its prior.
        prior: ``attention`` | ``concat`` | ``none`` (unused without the metric branch).
        heads: embedding size, decoder width and change classes.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        name: str = "deepcl",
        metric_branch: bool = True,
        prior: str = "attention",
        heads: ChangeHeadSpec = ChangeHeadSpec(),
    ) -> None:
        super().__init__()
        if name not in DECODERS:
            raise ConfigError(f"model.name is '{name}'; valid values: {', '.join(MODEL_NAMES)}.")
        mean, std = band_statistics(encoder.in_chans, mean, std)
        check_prior(prior)
        embed_dim, decoder_channels, num_classes = int(heads.embed_dim), int(heads.decoder_channels), int(heads.num_classes)
        self.name, self.metric_branch = name, bool(metric_branch)
        self.prior = prior if metric_branch else "none"
        self.embed_dim, self.decoder_channels, self.num_classes = embed_dim, decoder_channels, num_classes
        self.encoder = encoder
        self.metric_head = MetricHead(encoder.out_channels, embed_dim) if metric_branch else None
        levels = [encoder.out_channels] * len(encoder.out_strides)
        finest = int(encoder.out_strides[0])
        ratios = [int(s) // finest if int(s) % finest == 0 else None for s in encoder.out_strides]
        self.decoder = DECODERS[name](levels, decoder_channels, self.prior, ratios=ratios)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def from_arch(cls, encoder: Encoder, arch: dict[str, Any], *, mean: Sequence[float], std: Sequence[float]) -> "ChangeModel":
        """The detector that :meth:`arch` (a checkpoint's ``model`` metadata) describes, around ``encoder``."""
        sizes = {k: arch[k] for k in ("embed_dim", "decoder_channels", "num_classes") if k in arch}
        rest = {k: v for k, v in arch.items() if k not in sizes}
        return cls(encoder, mean=mean, std=std, heads=ChangeHeadSpec(**sizes), **rest)

    @property
    def in_chans(self) -> int:
        return self.encoder.in_chans

    @property
    def stride(self) -> int:
        """Coarsest encoder stride: shifts by multiples of it keep the feature grids aligned."""
        return int(max(self.encoder.out_strides))

    def normalisation(self) -> dict[str, list[float]]:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def arch(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model around an encoder (checkpoint metadata)."""
        return {
            "name": self.name,
            "metric_branch": self.metric_branch,
            "prior": self.prior,
            "embed_dim": self.embed_dim,
            "decoder_channels": self.decoder_channels,
            "num_classes": self.num_classes,
        }

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Change logits ``(B, K, H, W)`` and the distance map ``(B, 1, H/4, W/4)`` (None without metric branch).

        Args:
            a, b: ``(B, C, H, W)`` images of the two dates in ``[0, 1]``.
        """
        x = (torch.cat([a, b], 0) - self.mean) / self.std
        levels = self.encoder.forward_pyramid(x)
        halves = [level.chunk(2, 0) for level in levels]
        feats_a, feats_b = [h[0] for h in halves], [h[1] for h in halves]
        distance = None
        if self.metric_head is not None:
            e1, e2 = self.metric_head(levels[0]).chunk(2, 0)
            distance = embedding_distance(e1, e2)
        y = self.decoder(feats_a, feats_b, distance)
        logits = F.interpolate(self.classifier(y), size=a.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "distance": distance}


def build_change_model(
    model_cfg: Any, in_chans: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> ChangeModel:
    """The detector that a ``model`` config section describes, its encoder from ``model.encoder``.

    The encoder comes through :func:`densechange.checkpoints.build_encoder`, so any source works: random,
    ImageNet, a registry name, a pretraining run's ``encoder.safetensors``, a URL.
    """
    encoder, mean, std = build_normalised_encoder(model_cfg.encoder, in_chans=in_chans, mean=mean, std=std,
                                                  backbone=model_cfg.backbone, neck_channels=model_cfg.neck_channels,
                                                  registry=model_cfg.registry, backbone_args=model_cfg.backbone_args)
    return ChangeModel(
        encoder,
        mean=mean,
        std=std,
        name=model_cfg.name,
        metric_branch=model_cfg.metric_branch,
        prior=model_cfg.prior,
        heads=ChangeHeadSpec(embed_dim=model_cfg.embed_dim, decoder_channels=model_cfg.decoder_channels),
    )
