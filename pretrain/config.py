"""Pretraining config schema: every valid key, its type and its default."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pretrain.engine.config import OptimConfig, RunConfig, TrainerConfig


@dataclass
class DataConfig:
    root: Optional[str] = None  # dataset folder, or "synthetic" for the embedded generator
    split: Optional[str] = "train"  # list/<split>.txt when present, else every pair
    tile_size: int = 256  # tiles are cropped / padded to this before the views are drawn
    mask_mode: str = "auto"  # auto | binary255 | binary01 | ids
    ignore_value: Optional[int] = None
    num_classes: Optional[int] = None  # inferred from the masks when unset
    in_chans: int = 3
    mean: Optional[list[float]] = None  # per band; default: the init weights' statistics, else 0.5
    std: Optional[list[float]] = None
    synthetic_images: int = 64  # size of the embedded dataset when root=synthetic
    synthetic_classes: str = "building"  # building | all


@dataclass
class AugConfig:
    size: int = 256
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    hflip: float = 0.5
    vflip: float = 0.5
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # any timm model with features_only
    init: str = "imagenet"  # none | random | imagenet | registry name | checkpoint path | URL
    neck_channels: int = 256
    proj_hidden: int = 2048
    proj_dim: int = 1024
    pred_hidden: int = 256
    dropout: float = 0.2
    points_per_class: int = 16
    sampling: str = "bilinear"  # bilinear | nearest (reference)
    synthetic_view: bool = True
    w_cons: float = 1.0
    w_push: float = 1.0
    w_syn: float = 0.5


def _pretrain_trainer() -> TrainerConfig:
    return TrainerConfig(epochs=200, batch_size=64, optim=OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4))


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=_pretrain_trainer)
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/pretrain"))


CHOICES = {
    "data.mask_mode": ("auto", "binary255", "binary01", "ids"),
    "data.synthetic_classes": ("building", "all"),
    "model.sampling": ("bilinear", "nearest"),
}
