"""The pretraining config schema: every valid key of ``densechange pretrain``, its type and its default.

The per-epoch probe section extends the probe's scoring settings (:class:`densechange.pretrain.probe.config.ProbeConfig`),
so a probe run during pretraining scores exactly like ``densechange probe``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from densechange.datasets.io.images import MASK_MODES
from densechange.engine.config import OptimConfig, RunConfig, TrainerConfig
from densechange.pretrain.probe.config import CHANGE_FEATURES, CHANGE_HEADS, TASKS, ProbeConfig
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.sadl.views import ViewAugment


@dataclass
class ImageMaskLayoutConfig:
    """The dataset's folder tree: a known public layout, detected by default, or one described here."""

    name: str = "auto"  # auto | sadl | image-mask | inria | whu-building | loveda | openearthmap | custom
    image: Optional[str] = None  # image folder (default: the named layout's, else image)
    mask: Optional[str] = None  # mask folder (default: mask)
    groups: Optional[bool] = None  # true: the folders sit in group sub-folders (LoveDA's Urban/, Rural/)
    lists: Optional[str] = None  # split list files, e.g. list/{split}.txt (the default)
    scene: Optional[bool] = None  # true: each folder holds one whole raster, paired whatever its name (WHU-CD)


@dataclass
class DataConfig:
    root: Optional[str] = None  # dataset folder, or "synthetic" for the embedded generator
    layout: ImageMaskLayoutConfig = field(default_factory=ImageMaskLayoutConfig)
    split: Optional[str] = "train"  # list/<split>.txt when present, else every pair
    tile_size: int = 256  # tiles are cropped / padded to this before the views are drawn
    crops_per_epoch: Optional[int] = None  # null: area / tile_size² per image (at least 1), as if pre-cut into tiles
    mask_mode: str = "auto"  # auto (the layout's) | binary255 | binary01 | ids | ids_from_1
    ignore_value: Optional[int] = None  # mask value to leave out of sampling and losses
    skip_incomplete: bool = False  # true: skip images without a mask (with a warning); false: an error
    allow_network_sources: bool = False  # true: a VRT in the data may read URLs and cloud storage (off: refused)
    num_classes: Optional[int] = None  # inferred from the masks when unset
    in_chans: int = 3  # input bands
    mean: Optional[list[float]] = None  # per band; default: the init weights' statistics, else 0.5 (the reference feeds 0.5 to any weights)
    std: Optional[list[float]] = None  # per band; default: the init weights' statistics, else 0.5 (the reference: 0.5)
    synthetic_images: int = 64  # size of the embedded dataset when root=synthetic
    synthetic_classes: str = "building"  # building | all
    masks: str = "labels"  # labels: the dataset's masks | pseudo: k-means pseudo-masks, no label/ folder needed


@dataclass
class PretrainProbeConfig(ProbeConfig):
    """Per-epoch monitoring of a pretraining run: collapse warning and, optionally, probe scores."""

    every: int = 0  # probe every N epochs (0: never); needs probe.data
    task: str = "segmentation"  # segmentation (kNN and k-means against masks) | change (a head on change pairs)
    data: Optional[str] = None  # labelled held-out image-mask folder (probe.task=change: change dataset folder), or "synthetic"
    split: Optional[str] = None  # held-out split: <split>/ or list/<split>.txt; null: every pair (task=change: fits the head; null: train)
    test_split: str = "test"  # probe.task=change: the split scored
    tile_size: Optional[int] = None  # crop / pad the held-out images; null: whole images
    mask_mode: str = "auto"  # how the held-out masks are decoded, as data.mask_mode
    ignore_value: Optional[int] = None  # mask value of the held-out set to leave out
    num_classes: Optional[int] = None  # classes of the held-out masks; null: inferred from them
    max_images: Optional[int] = None  # probe the first N held-out images only (probe.task=change: pairs of each split); null: all
    collapse_warn: float = 0.1  # warn when proj_std < collapse_warn / sqrt(model.proj_dim)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # any timm model with features_only
    backbone_args: dict[str, Any] = field(default_factory=dict)  # further timm arguments, e.g. a small Swin's depths
    init: str = "imagenet"  # none | random | imagenet | registry name | checkpoint path | URL
    registry: list[str] = field(default_factory=list)  # extra registry files / URLs for init names
    neck_channels: int = 256  # FPN width
    proj_hidden: int = 2048  # hidden width of the projector
    proj_dim: int = 1024  # output width of the projector (the embedding)
    pred_hidden: int = 256  # hidden width of the predictor
    dropout: float = 0.2  # Dropout2d on the dense features
    points_per_class: int = 16  # points drawn per class per image in the overlap of the views
    sampling: str = "bilinear"  # bilinear | nearest (reference)
    synthetic_view: bool = True  # the background-swap view and its loss
    w_cons: float = 1.0  # weight of the consistency loss (a ground point pulled together across views)
    w_push: float = 1.0  # weight of the push loss (background and foreground points apart)
    w_syn: float = 0.5  # weight of the synthetic-view loss


def _pretrain_trainer() -> TrainerConfig:
    """The SaDL reference optimisation: SGD 0.01, momentum 0.9, weight decay 5e-4 on every parameter, batch 64, 200 epochs."""
    return TrainerConfig(epochs=200, batch_size=64,
                         optim=OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, decay_norm_and_bias=True))


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    aug: ViewAugment = field(default_factory=ViewAugment)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=_pretrain_trainer)
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/pretrain"))
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    probe: PretrainProbeConfig = field(default_factory=PretrainProbeConfig)
    trust_edited: bool = False  # load model.init and trainer.resume even if their metadata was edited (warns)


CHOICES = {
    "data.mask_mode": MASK_MODES,
    "data.synthetic_classes": ("building", "all"),
    "data.masks": ("labels", "pseudo"),
    "model.sampling": ("bilinear", "nearest"),
    "probe.mask_mode": MASK_MODES,
    "probe.task": TASKS,
    "probe.features": CHANGE_FEATURES,
    "probe.head": CHANGE_HEADS,
}
