"""Finetuning and evaluation config schemas: every valid key, its type and its default.

The shared ``trainer`` and ``run`` sections come from :mod:`densechange.engine.config`; the sections
here describe the change data and the DeepCL model. The sections of the classes that apply them
are those classes, so their defaults are written once: ``aug`` is the training pseudo-change
(:mod:`densechange.finetune.deepcl.pseudo_change`), and validation (``val``) and ``densechange
evaluate`` score with :class:`~densechange.finetune.inference.scoring.ScoreSettings` (the same
``window``, ``pseudo_change``, ``nuisance`` and ``num_workers`` keys in both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from densechange.engine.config import OptimConfig, RunConfig, ScheduleConfig, TrainerConfig
from densechange.engine.precision import PRECISIONS

from densechange.finetune.deepcl.decoders import DECODERS
from densechange.finetune.deepcl.prior import PRIORS
from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment
from densechange.finetune.inference.scoring import PSEUDO_CHANGE, ScoreSettings


@dataclass
class ChangeLayoutConfig:
    """The dataset's folder tree: a known public layout, detected by default, or one described here."""

    name: str = "auto"  # auto | levir-cd | s2looking | sysu-cd | cdd | dsifn-cd | whu-cd | whu-cd-single | second | custom
    a: Optional[str] = None  # first-date folder, may hold {split} (default: the named layout's, else A)
    b: Optional[str] = None  # second-date folder (default: B)
    label: Optional[str] = None  # change-label folder (default: label)
    labels: Optional[str] = None  # label decoding: binary | threshold | semantic (default: the layout's)
    groups: Optional[bool] = None  # true: the folders sit in group sub-folders (LoveDA-style)
    lists: Optional[str] = None  # split list files, e.g. list/{split}.txt (the default)
    scene: Optional[bool] = None  # true: each folder holds one whole raster, paired whatever its name (WHU-CD)


@dataclass
class DataConfig:
    root: Optional[str] = None  # change dataset folder, or "synthetic" for the embedded generator
    layout: ChangeLayoutConfig = field(default_factory=ChangeLayoutConfig)
    split: str = "train"
    val_split: Optional[str] = "val"  # null: no validation (and no best.safetensors)
    crop_size: Optional[int] = 256  # random training crops of larger tiles (BIT: 256)
    crops_per_epoch: Optional[int] = None  # null: area / crop_size² per pair (at least 1), as if pre-cut into tiles
    flip: bool = True
    rot90: bool = True
    ignore_value: Optional[int] = None  # stored label value to leave out of losses and metrics
    skip_incomplete: bool = False  # true: skip pairs without A, B or label (with a warning); false: an error
    in_chans: int = 3
    mean: Optional[list[float]] = None  # per band; default: the encoder weights' statistics, else 0.5
    std: Optional[list[float]] = None
    synthetic_pairs: int = 64  # data.root=synthetic: training pairs
    synthetic_val_pairs: int = 16  # data.root=synthetic: validation (and test) pairs
    synthetic_size: int = 256
    fraction: float = 1.0  # 0 < f <= 1: train on a seeded subset of the training pairs (validation and test untouched)
    fraction_seed: int = 0  # subsets of one seed are nested: the 20% subset lies inside the 50% subset


@dataclass
class ModelConfig:
    name: str = "deepcl"  # deepcl (multi-level decoder) | siam_diff (plain siamese difference baseline)
    encoder: str = "imagenet"  # random | imagenet | registry name | checkpoint path | URL
    registry: list[str] = field(default_factory=list)  # extra registry files / URLs for encoder names
    backbone: str = "resnet18"  # used when the encoder source does not record one
    backbone_args: dict[str, Any] = field(default_factory=dict)  # further timm arguments, when the source records none
    neck_channels: int = 256
    metric_branch: bool = True  # false: the plain detector, without HSCL and without the distance prior
    embed_dim: int = 64
    decoder_channels: int = 64
    prior: str = "attention"  # attention F*(1 + D/2) | concat | none
    hscl_margin: float = 1.0
    hscl_gamma: float = 2.0  # 0: STANet's batch-balanced contrastive loss
    hscl_weight: float = 1.0
    dice_weight: float = 1.0


@dataclass
class ValConfig(ScoreSettings):
    """Per-epoch validation: how it scores (:class:`ScoreSettings`), and its pictures."""

    pseudo_change: str = "all"  # none | all (all nuisances together) | each (also each alone): logged as pc_* keys
    triptychs: int = 4  # validation pictures (A | B | label | prediction) saved per epoch


def _finetune_trainer() -> TrainerConfig:
    """The BIT / SaDL finetuning protocol: SGD 0.01, momentum 0.9, wd 5e-4, linear decay, batch 8."""
    return TrainerConfig(
        epochs=200,
        batch_size=8,
        num_workers=2,
        optim=OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4),
        schedule=ScheduleConfig(name="poly", power=1.0),
    )


@dataclass
class FinetuneConfig:
    data: DataConfig = field(default_factory=DataConfig)
    aug: PseudoChangeAugment = field(default_factory=PseudoChangeAugment)  # its fields are the section's keys
    model: ModelConfig = field(default_factory=ModelConfig)
    val: ValConfig = field(default_factory=ValConfig)
    trainer: TrainerConfig = field(default_factory=_finetune_trainer)
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/finetune"))


@dataclass
class EvalDataConfig:
    root: Optional[str] = None
    layout: ChangeLayoutConfig = field(default_factory=ChangeLayoutConfig)
    split: str = "test"
    ignore_value: Optional[int] = None
    skip_incomplete: bool = False
    synthetic_pairs: int = 16
    synthetic_size: int = 256


@dataclass
class EvaluateConfig(ScoreSettings):
    """``densechange evaluate``: the data, how it is scored (:class:`ScoreSettings`, as validation), where the model runs."""

    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 where the device runs it natively, else fp32) | fp32 | bf16 | fp16


CHOICES = {
    "model.name": tuple(DECODERS),
    "model.prior": PRIORS,
    "val.pseudo_change": tuple(PSEUDO_CHANGE),
}
EVAL_CHOICES = {"device": ("auto", "cpu", "cuda"), "precision": PRECISIONS, "pseudo_change": tuple(PSEUDO_CHANGE)}
