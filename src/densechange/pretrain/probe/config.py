"""Probe config schemas: the scoring settings and the ``densechange probe`` command.

:class:`ProbeConfig` is one dataclass shared by the command and by the per-epoch probe of a
pretraining run, so both score an encoder the same way, for segmentation (kNN and k-means against
masks) and for change detection (a head on feature differences of change pairs; the keys marked
``task=change``). It is also the settings object the
probes take whole (:func:`densechange.pretrain.probe.score.probe_settings` builds it from a section),
and its values are checked once, when it is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from densechange.datasets.io.images import MASK_MODES
from densechange.engine.change_sets import ChangeLayoutConfig
from densechange.engine.errors import ConfigError

TASKS = ("segmentation", "change")
CHANGE_FEATURES = ("diff", "concat")
CHANGE_HEADS = ("logreg", "knn")


@dataclass
class ProbeConfig:
    """How the dense-feature probes score an encoder (kNN label transfer and k-means)."""

    pixels_per_image: Optional[int] = 1000  # seeded pixels per image on the stride-4 grid; null: every pixel
    max_pixels: Optional[int] = 100_000  # at most this many in all (a seeded sample; rank 0 holds them); null: no limit
    exact_max: int = 50_000  # exact kNN up to this many pixels, a faiss IVF index above (exact cost grows as N^2)
    nprobe: int = 16  # IVF lists searched per query
    k: int = 20  # neighbours of the kNN label transfer
    temperature: float = 0.07  # neighbour votes weigh exp(cos / temperature)
    folds: int = 5  # images are split into folds; each fold is labelled from the others
    clusters: Optional[int] = None  # k-means K; null: the number of classes
    kmeans_iters: int = 25  # k-means iterations
    batch_size: int = 8  # images per feature-extraction batch
    stride: int = 4  # task=change: the encoder's FPN level compared, by its stride (4 or 8 for an FPN's finest two)
    features: str = "diff"  # task=change: diff (|f_A - f_B|) | concat (|f_A - f_B|, f_A and f_B side by side)
    head: str = "logreg"  # task=change: logreg (logistic regression) | knn (share of changed among probe.k neighbours)
    pixels_per_class: int = 5000  # task=change: seeded training cells per class (unchanged, changed) of data.split
    steps: int = 300  # task=change, head=logreg: full-batch Adam steps on the sampled cells
    lr: float = 0.05  # task=change, head=logreg: Adam learning rate (on features standardised by the sample)
    weight_decay: float = 1e-4  # task=change, head=logreg: L2 penalty on the weights
    threshold: float = 0.5  # task=change: a cell is called changed where the head's change probability reaches this

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"probe.max_pixels={self.max_pixels}: expected a positive number of pixels, or null for "
                              "no limit.")
        if self.exact_max < 0 or self.nprobe < 1:
            raise ConfigError(f"probe.exact_max={self.exact_max} and probe.nprobe={self.nprobe}: expected exact_max >= 0 "
                              "and nprobe >= 1.")
        if self.k < 1:
            raise ConfigError(f"probe.k={self.k}: need at least one neighbour.")
        if self.temperature <= 0:
            raise ConfigError(f"probe.temperature={self.temperature}: must be positive.")
        if self.folds < 2:
            raise ConfigError(f"probe.folds={self.folds}: need at least 2 folds (each fold is labelled from the others).")
        if self.stride < 1 or self.pixels_per_class < 1 or self.steps < 0:
            raise ConfigError(f"probe.stride={self.stride}, probe.pixels_per_class={self.pixels_per_class} and "
                              f"probe.steps={self.steps}: expected a positive stride and pixel count, and steps >= 0.")
        if self.features not in CHANGE_FEATURES or self.head not in CHANGE_HEADS:
            raise ConfigError(f"probe.features={self.features!r} and probe.head={self.head!r}: valid values are "
                              f"{', '.join(CHANGE_FEATURES)} and {', '.join(CHANGE_HEADS)}.")
        if not 0 < self.threshold < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"probe.threshold={self.threshold}, probe.lr={self.lr} and probe.weight_decay="
                              f"{self.weight_decay}: expected 0 < threshold < 1, lr > 0 and weight_decay >= 0.")


@dataclass
class ProbeDataConfig:
    """The labelled set that a probe scores features against: image-mask pairs, or change pairs (``task=change``)."""

    root: Optional[str] = None  # image-mask folder (task=change: change dataset folder), or "synthetic"
    layout: ChangeLayoutConfig = field(default_factory=ChangeLayoutConfig)
    split: Optional[str] = None  # list/<split>.txt when given, else every pair (task=change: the head's training split; null: train)
    test_split: str = "test"  # task=change: the split scored
    tile_size: Optional[int] = None  # crop / pad every image to this (seeded; task=change: crops of each pair); null: whole images
    mask_mode: str = "auto"  # auto | binary255 | binary01 | ids | ids_from_1, as the pretraining data.mask_mode
    ignore_value: Optional[int] = None  # mask value to leave out
    num_classes: Optional[int] = None  # classes of the masks; null: inferred from them
    max_images: Optional[int] = None  # the first N images only (task=change: of each split)
    skip_incomplete: bool = False  # task=change: true: skip pairs without A, B or label (with a warning); false: an error
    bands: Optional[list[str]] = None  # task=change, OSCD: the Sentinel-2 bands to read, in order, e.g. [B04,B03,B02]; null: all
    in_chans: int = 3  # input bands
    mean: Optional[list[float]] = None  # per band; default: the encoder's statistics, else 0.5
    std: Optional[list[float]] = None  # per band, as data.mean
    synthetic_images: int = 16  # data.root=synthetic: images (task=change: pairs of each split)
    synthetic_size: int = 128  # data.root=synthetic: image side in pixels
    synthetic_classes: str = "building"  # data.root=synthetic: building | all


@dataclass
class ProbeModelConfig:
    """Architecture for encoder sources that do not record one (``random``, ``imagenet``)."""

    backbone: str = "resnet18"  # timm backbone, for sources that record none
    neck_channels: int = 256  # FPN width, for sources that record none


@dataclass
class ProbeCommandConfig:
    task: str = "segmentation"  # segmentation (kNN and k-means against masks) | change (a head on feature differences of change pairs)
    encoder: Optional[str] = None  # the encoder to probe: a checkpoint, a registry name, a URL, random, imagenet or bands (the input bands)
    data: ProbeDataConfig = field(default_factory=ProbeDataConfig)
    model: ProbeModelConfig = field(default_factory=ProbeModelConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    device: str = "auto"  # auto | cpu | cuda (feature extraction; faiss uses its GPUs when it has any)
    seed: int = 0  # seed of the pixel samples, folds and k-means (task=change: of the training cells and crops)


PROBE_CHOICES = {
    "task": TASKS,
    "probe.features": CHANGE_FEATURES,
    "probe.head": CHANGE_HEADS,
    "data.mask_mode": MASK_MODES,
    "data.synthetic_classes": ("building", "all"),
    "device": ("auto", "cpu", "cuda"),
}
