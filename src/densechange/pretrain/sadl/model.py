"""The SaDL pretraining task: views -> points -> encoder -> heads -> loss, for one batch.

One forward pass does everything that depends on the batch, on the training device: it draws two
views with their affine maps, samples class-balanced points in their overlap, builds the
background-swap view, encodes all views in one batched call, reads point features, projects and
predicts, and returns ``{"loss", "cons", "push", "syn", "proj_std"}``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densechange.models import Encoder
from densechange.models.normalisation import band_statistics
from densechange.datasets.transforms.photometric import color_jitter, gaussian_blur

from densechange.pretrain.sadl.background_swap import background_swap
from densechange.pretrain.sadl.heads import HeadSpec, MLPHead
from densechange.pretrain.sadl.losses import SaDLLoss
from densechange.pretrain.sadl.point_read import point_features
from densechange.pretrain.sadl.sampling import PointSpec, sample_class_points
from densechange.pretrain.sadl.views import ViewAugment, ViewGeometry, draw_geometry, overlap_mask, warp


def projection_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-channel std of L2-normalised projections: ~1/sqrt(E) when healthy, 0 at collapse."""
    return F.normalize(z.detach().float().flatten(0, -2), dim=-1).std(0).mean()


class SaDL(nn.Module):
    """Semantic-aware dense contrastive pretraining of an encoder (backbone + FPN).

    Paper: Chen et al., "Semantic-aware Dense Representation Learning for Remote Sensing Image
    Change Detection", IEEE TGRS 2022; code justchenhao/SaDL_CD.

    Args:
        encoder: backbone + FPN; its finest pyramid level (stride 4) is the dense feature map.
        mean, std: per-band normalisation applied after the photometric augmentation.
        points: the classes of the masks (2 for building / background), points per class and how
            their features are read.
        heads: projector and predictor sizes and the dense map's dropout.
        synthetic_view: add the background-swap view and its loss.
        augment: the two views' augmentation.
        loss: the loss terms' weights.

    Example:
        >>> task = SaDL(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3, points=PointSpec(num_classes=2))
        >>> out = task({"image": torch.rand(2, 3, 256, 256), "mask": torch.randint(0, 2, (2, 256, 256))})
        >>> out["loss"].backward()
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        points: PointSpec = PointSpec(),
        heads: HeadSpec = HeadSpec(),
        synthetic_view: bool = True,
        augment: ViewAugment | None = None,
        loss: SaDLLoss | None = None,
    ) -> None:
        super().__init__()
        mean, std = band_statistics(encoder.in_chans, mean, std)
        self.encoder = encoder
        self.dropout = nn.Dropout2d(heads.dropout)
        self.projector = MLPHead(encoder.out_channels, heads.proj_hidden, heads.proj_dim)
        self.predictor = MLPHead(heads.proj_dim, heads.pred_hidden, heads.proj_dim)
        self.loss = loss or SaDLLoss()
        self.aug = augment or ViewAugment()
        self.num_classes, self.points = points.num_classes, points.points_per_class
        self.sampling, self.synthetic_view = points.sampling, synthetic_view
        self._warned_single = False
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def compile_targets(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the backbone, nearly all of the step's FLOPs.

        Augmentation and point sampling have data-dependent shapes (classes absent from an overlap)
        that would split the graph and recompile it; the heads and the loss see a few hundred points.
        """
        return [self.encoder.backbone]

    def make_view(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, ViewGeometry]:
        """One augmented view of the batch in [0, 1], its mask and its geometry.

        The reference order (flip, blur, colour jitter, random resized crop): blur and jitter run
        on the tile, then one warp does flip and crop (flips commute with both).
        """
        a = self.aug
        b, _, h, w = image.shape
        geo = draw_geometry(b, h, w, a, generator, image.device)
        img = gaussian_blur(image, a.blur_sigma, p=a.blur_p, generator=generator)
        img = color_jitter(img, *a.jitter, p=a.jitter_p, generator=generator)
        img, m = warp(img, mask, geo)
        return img, m, geo

    def channel_dropout(self, batch: int, channels: int, like: torch.Tensor) -> torch.Tensor:
        """``Dropout2d`` of the dense map as a per-(image, channel) scale ``(B, 1, D)`` for its points."""
        return self.dropout(like.new_ones(batch, channels, 1, 1)).view(batch, 1, channels)

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        image, mask = batch["image"].float(), batch["mask"]
        if self.synthetic_view and image.shape[0] < 2 and not self._warned_single:
            warnings.warn("the background-swap view needs at least 2 images per process batch; with 1 it equals view 1 "
                          "and its loss teaches nothing. Raise trainer.batch_size or set model.synthetic_view=false.")
            self._warned_single = True
        v1, m1, g1 = self.make_view(image, mask, generator)
        v2, _, g2 = self.make_view(image, mask, generator)
        points, valid = sample_class_points(mask, overlap_mask(g1, g2), self.num_classes, self.points, generator)
        flat = points.flatten(1, 2)  # (B, K*n, 2) in the original frame
        p1, p2 = g1.to_view(flat), g2.to_view(flat)
        views = [v1, v2] + ([background_swap(v1, m1)] if self.synthetic_view else [])
        x = torch.cat(views, 0)
        x = (x - self.mean) / self.std
        if next(self.encoder.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        where = torch.cat([p1, p2, p1][: len(views)], 0)
        # Point features of P2 straight from the backbone levels: the same values as reading the
        # dense stride-4 map, without building it (see point_read).
        levels = self.encoder.forward_features(x)
        feats = point_features(self.encoder.neck, levels, where, (self.aug.size, self.aug.size), self.sampling)
        feats = feats * self.channel_dropout(feats.shape[0], feats.shape[-1], feats)
        v, b = len(views), image.shape[0]
        pts = feats.view(v, b, *feats.shape[1:])  # (V, B, K*n, D)
        kept = self.kept(valid)
        z, q = self.heads(pts, kept)
        shape = (v, b, self.num_classes, self.points, -1)
        with torch.autocast(x.device.type, enabled=False):  # the loss of a few hundred points, always in fp32
            out = self.loss(pts.float().view(shape), z.float().view(shape), q.float().view(shape), valid)
        out["proj_std"] = projection_std(z.flatten(1, 2)[:, kept])
        return out

    def kept(self, valid: torch.Tensor) -> torch.Tensor:
        """Indices into the ``B*K*n`` points of the classes present in the overlap.

        When fewer than two points are left (every class of every image ignored), all points are kept:
        BatchNorm needs two rows, and every loss term is masked out anyway.
        """
        keep = valid[:, :, None].expand(-1, -1, self.points).reshape(-1)
        idx = keep.nonzero().squeeze(1)
        return idx if idx.numel() >= 2 else torch.arange(keep.numel(), device=keep.device)

    def heads(self, pts: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections and predictions ``(V, B, K*n, E)`` of the points ``idx`` (see :meth:`kept`); zeros elsewhere.

        Points of a class absent from the overlap never reach the heads: they would shift the heads'
        BatchNorm statistics (and the collapse monitor) with features of pixels of another class. Heads
        run per view, so each view's points get their own BatchNorm statistics as in the reference.
        """
        v, b, kn, d = pts.shape
        z_kept = [self.projector(p.reshape(-1, d).index_select(0, idx)) for p in pts.unbind(0)]
        q_kept = [self.predictor(z) for z in z_kept]

        def spread(rows: list[torch.Tensor]) -> torch.Tensor:
            kept = torch.stack(rows)  # (V, M, E)
            full = kept.new_zeros(v, b * kn, kept.shape[-1])
            return full.index_copy(1, idx, kept).view(v, b, kn, -1)

        return spread(z_kept), spread(q_kept)
