"""Config schemas of the finetuning stage's commands: every valid key, its type, default and description.

The shared ``trainer`` and ``run`` sections come from :mod:`densechange.engine.config`; the sections
here describe the change data, the DeepCL model, and the keys of ``densechange evaluate``,
``predict`` and ``export``. The sections of the classes that apply them are those classes, so their
defaults are written once: ``aug`` is the training pseudo-change
(:mod:`densechange.finetune.deepcl.pseudo_change`); validation (``val``) and ``densechange
evaluate`` score with :class:`~densechange.finetune.inference.scoring.ScoreSettings` (the same
``window``, ``pseudo_change``, ``nuisance`` and ``num_workers`` keys in both); every command that
slides windows over a scene (validation, ``evaluate``, ``predict``, ``export``) reads the one
default window, :data:`~densechange.finetune.inference.windows.DEFAULT_WINDOWS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from densechange.datasets.io.remote import RemoteSettings
from densechange.engine.change_sets import ChangeLayoutConfig
from densechange.engine.config import OptimConfig, RunConfig, ScheduleConfig, TrainerConfig
from densechange.engine.precision import PRECISIONS

from densechange.finetune.deepcl.decoders import DECODERS
from densechange.finetune.deepcl.prior import PRIORS
from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment
from densechange.finetune.inference.scoring import PSEUDO_CHANGE, ScoreSettings
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowSettings
from densechange.finetune.vector.options import VectorOptions


@dataclass
class DataConfig:
    root: Optional[str] = None  # change dataset folder, or "synthetic" for the embedded generator
    layout: ChangeLayoutConfig = field(default_factory=ChangeLayoutConfig)
    split: str = "train"  # training split: <split>/ folder or list/<split>.txt
    val_split: Optional[str] = "val"  # null: no validation (and no best.safetensors)
    crop_size: Optional[int] = 256  # random training crops of larger tiles (BIT: 256)
    crops_per_epoch: Optional[int] = None  # null: area / crop_size² per pair (at least 1), as if pre-cut into tiles
    flip: bool = True  # random flips, the same for both dates and the label
    rot90: bool = True  # random quarter turns, the same for both dates and the label
    ignore_value: Optional[int] = None  # stored label value to leave out of losses and metrics
    skip_incomplete: bool = False  # true: skip pairs without A, B or label (with a warning); false: an error
    allow_network_sources: bool = False  # true: a VRT in the data may read URLs and cloud storage (off: refused)
    in_chans: int = 3  # input bands of each date (with data.bands: their number)
    bands: Optional[list[str]] = None  # OSCD: the Sentinel-2 bands to read, in order, e.g. [B04,B03,B02]; null: all 13
    mean: Optional[list[float]] = None  # per band; default: the encoder weights' statistics, else 0.5
    std: Optional[list[float]] = None  # per band, as data.mean
    synthetic_pairs: int = 64  # data.root=synthetic: training pairs
    synthetic_val_pairs: int = 16  # data.root=synthetic: validation (and test) pairs
    synthetic_size: int = 256  # data.root=synthetic: side of the pairs in pixels
    fraction: float = 1.0  # 0 < f <= 1: train on a seeded subset of the training pairs (validation and test untouched)
    fraction_seed: int = 0  # subsets of one seed are nested: the 20% subset lies inside the 50% subset


@dataclass
class ModelConfig:
    name: str = "deepcl"  # deepcl (multi-level decoder) | siam_diff (plain siamese difference baseline)
    encoder: str = "imagenet"  # random | imagenet | registry name | checkpoint path | URL
    registry: list[str] = field(default_factory=list)  # extra registry files / URLs for encoder names
    backbone: str = "resnet18"  # used when the encoder source does not record one
    backbone_args: dict[str, Any] = field(default_factory=dict)  # further timm arguments, when the source records none
    neck_channels: int = 256  # FPN width, when the encoder source does not record one
    metric_branch: bool = True  # false: the plain detector, without HSCL and without the distance prior
    embed_dim: int = 64  # width of the metric branch's embedding
    decoder_channels: int = 64  # width of the segmentation decoder
    prior: str = "attention"  # attention F*(1 + D/2) | concat | none
    hscl_margin: float = 1.0  # HSCL margin m: changed pixels are pushed to a distance of at least m
    hscl_gamma: float = 2.0  # 0: STANet's batch-balanced contrastive loss
    hscl_weight: float = 1.0  # weight of the HSCL term in the loss
    dice_weight: float = 1.0  # weight of the Dice term in the loss


@dataclass
class WindowGridConfig:
    """Where the sliding windows lie (see :mod:`densechange.finetune.inference.windows`); an ONNX export records it."""

    size: int = DEFAULT_WINDOWS.size  # window side in pixels (a multiple of the network's coarsest stride)
    overlap: int = DEFAULT_WINDOWS.overlap  # pixels shared by neighbouring windows, blended at the seams
    margin: int = DEFAULT_WINDOWS.margin  # pixels next to an inner window edge that get no weight


@dataclass
class ValConfig(ScoreSettings):
    """Per-epoch validation: how it scores (:class:`ScoreSettings`, as ``densechange evaluate``), and its pictures."""

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
    trust_edited: bool = False  # load model.encoder and trainer.resume even if their metadata was edited (warns)


@dataclass
class EvalDataConfig:
    root: Optional[str] = None  # change dataset folder, or "synthetic" for the embedded generator
    layout: ChangeLayoutConfig = field(default_factory=ChangeLayoutConfig)
    split: str = "test"  # split to score: <split>/ folder or list/<split>.txt
    ignore_value: Optional[int] = None  # stored label value to leave out of the metrics
    skip_incomplete: bool = False  # true: skip pairs without A, B or label (with a warning); false: an error
    allow_network_sources: bool = False  # true: a VRT in the data may read URLs and cloud storage (off: refused)
    bands: Optional[list[str]] = None  # OSCD: the bands to read, in order; null: those the checkpoint was trained on
    synthetic_pairs: int = 16  # data.root=synthetic: pairs to score
    synthetic_size: int = 256  # data.root=synthetic: side of the pairs in pixels


@dataclass
class EvalTarget:
    """What ``densechange evaluate`` scores, and where the metrics go."""

    checkpoint: Optional[str] = None  # change-model file (a finetuning run's best.safetensors)
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)
    out: Optional[str] = None  # metrics JSON file; null: metrics.json beside the checkpoint
    data: EvalDataConfig = field(default_factory=EvalDataConfig)


@dataclass
class EvaluateConfig(ScoreSettings, EvalTarget):
    """``densechange evaluate``: what it scores (:class:`EvalTarget`), how (:class:`ScoreSettings`: validation's keys
    without ``val.``), and where the model runs."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the device runs it natively, else fp32) | fp32 | bf16 | fp16


@dataclass
class SplitOptions:
    """How ``densechange predict`` cuts a large scene into bands of rows that several processes share."""

    min_pixels: Optional[int] = 64_000_000  # split scenes larger than this many pixels into bands; null: never split
    band_rows: int = 8192  # pixel rows per band, rounded to whole block rows (each band also reruns one block row above it)


@dataclass
class PredictConfig:
    checkpoint: Optional[str] = None  # change-model file (a run's best.safetensors), or a model exported to .onnx
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)
    a: Optional[str] = None  # first-date raster, or a folder of them
    allow_network_sources: bool = False  # true: a VRT named or found here may read URLs and cloud storage (off: refused)
    b: Optional[str] = None  # second-date raster, or a folder with the same file names
    pairs: Optional[str] = None  # instead of a and b: a list or CSV file of pairs a,b[,out] (paths relative to the file)
    out: Optional[str] = None  # change map file (.tif, .tiff or .png), or a folder when a and b are folders or pairs is set
    distance: Optional[str] = None  # also write the metric branch's distance map to this file (or folder)
    probability: Optional[Union[bool, str]] = None  # also write the change probability: to this file (or folder); true: beside out
    cog: bool = False  # write Cloud-Optimised GeoTIFFs with overviews
    window: WindowSettings = field(default_factory=WindowSettings)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the device runs it natively, else fp32) | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the network: faster windows after a warm-up of tens of seconds (PyTorch only)
    progress: bool = True  # a progress bar (one scene only)
    region: Optional[list[int]] = None  # [top, left, height, width] in A's pixels: predict only that part (the outputs cover it)
    bands: Optional[list[str]] = None  # a and b are STAC items: the bands to read, by common name or name, in order, e.g. [red,green,blue,nir]
    remote: RemoteSettings = field(default_factory=RemoteSettings)  # how URLs (a, b, STAC assets) are read: GDAL's retries and timeout
    vector: VectorOptions = field(default_factory=VectorOptions)  # change polygons of each map (vector.out=changes.gpkg), as densechange vectorize
    split: SplitOptions = field(default_factory=SplitOptions)  # large scenes in bands of rows, dealt to processes like scenes
    resume: bool = True  # skip outputs that manifest.jsonl in the output folder records as made by this model and these settings
    dist_timeout_s: int = 86400  # under torchrun: seconds a process may wait for the others (at the start, and at the end for the last one)


@dataclass
class ExportConfig:
    checkpoint: Optional[str] = None  # change-model file (a finetuning run's best.safetensors)
    out: Optional[str] = None  # the .onnx file to write
    form: str = "pair"  # pair (inputs a, b) | stacked (one input of 2C bands, A's then B's) | deepness (QGIS plugin)
    window: WindowGridConfig = field(default_factory=WindowGridConfig)  # recorded in the file; deepness: its fixed tile
    resolution: Optional[float] = None  # ground resolution in cm/px for deepness; null: from the training data
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)


CHOICES = {
    "model.name": tuple(DECODERS),
    "model.prior": PRIORS,
    "val.pseudo_change": tuple(PSEUDO_CHANGE),
}
EVAL_CHOICES = {"device": ("auto", "cpu", "cuda"), "precision": PRECISIONS, "pseudo_change": tuple(PSEUDO_CHANGE)}
PREDICT_CHOICES = {"device": ("auto", "cpu", "cuda"), "precision": PRECISIONS}
