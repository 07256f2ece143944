"""``densechange check | synth | tile | stack | stats``: the dataset tools on the command line.

    densechange check my_data                                   # exit 1 when training would fail
    densechange check my_data data.split=train                  # one split alone
    densechange check my_cd data.layout.a=before data.layout.b=after data.layout.label=change
    densechange synth runs/pairs kind=change n=64 size=128 seed=1
    densechange tile my_data my_data_512 size=512               # format=png, overlap=N
    densechange stack a.tif b.tif both.vrt
    densechange stats my_data                                   # last line: data.mean=[...] data.std=[...]

They read the layouts training reads: a known public one, detected or named by
``data.layout.name``, or the tree that the same ``data.layout.*`` keys as the training configs
describe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import MASK_MODES
from densechange.datasets.io.sources import allow_network_sources
from densechange.datasets.readers.layouts import LAYOUT_KEYS, Layout, configured_layout, layout_named, layout_names
from densechange.datasets.tools.check import KINDS
from densechange.datasets.tools.tile import FORMATS
from densechange.engine.cli import CommandSpec, parse_command
from densechange.engine.config import to_dict


@dataclass
class LayoutKeys:
    """The folder tree: a known public layout (detected by default), or one described by its folders."""

    name: str = "auto"  # auto (detect) | custom (the plain folders) | a known layout's name (see docs: datasets)
    a: Optional[str] = None  # change pairs: first-date folder, may hold {split}
    b: Optional[str] = None  # change pairs: second-date folder
    label: Optional[str] = None  # change pairs: change-label folder
    labels: Optional[str] = None  # change pairs: label decoding, binary | threshold | semantic
    image: Optional[str] = None  # image-mask pairs: image folder
    mask: Optional[str] = None  # image-mask pairs: mask folder
    groups: Optional[bool] = None  # true: the folders sit in group sub-folders (LoveDA's Urban/, Rural/)
    lists: Optional[str] = None  # split list files, e.g. list/{split}.txt
    scene: Optional[bool] = None  # true: each folder holds one whole raster, paired whatever its name (WHU-CD)


@dataclass
class ToolData:
    root: Optional[str] = None  # the dataset folder
    kind: str = "auto"  # auto | image-mask | change (auto: from the layout keys given, else detected)
    layout: LayoutKeys = field(default_factory=LayoutKeys)
    allow_network_sources: bool = False  # true: a VRT in the data may read URLs and cloud storage (off: refused)


@dataclass
class CheckData(ToolData):
    split: Optional[str] = None  # check this split alone (a split folder, list file or OSCD split); null: every split
    ignore_value: Optional[int] = None  # stored mask value of ignored pixels
    mask_mode: str = "auto"  # how mask values read: auto | binary255 | binary01 | ids | ids_from_1
    num_classes: Optional[int] = None  # bound on the class ids of image-mask datasets


@dataclass
class CheckConfig:
    data: CheckData = field(default_factory=CheckData)


@dataclass
class TileData(ToolData):
    ignore_value: Optional[int] = None  # stored label value of pixels to ignore
    skip_incomplete: bool = False  # true: skip samples that lack a file; false: an error naming the files


@dataclass
class TileConfig:
    data: TileData = field(default_factory=TileData)
    out: Optional[str] = None  # the folder to write (it appears only when complete)
    size: int = 512  # tile side in pixels
    overlap: int = 0  # pixels shared by neighbouring tiles
    format: str = "tif"  # tif (tiled GeoTIFF) | png


@dataclass
class StatsData(ToolData):
    split: str = "train"  # split whose images count (a folder without splits counts every image)


@dataclass
class StatsConfig:
    data: StatsData = field(default_factory=StatsData)
    pixels: int = 2_000_000  # pixels sampled; a smaller dataset is read whole and the result is exact
    window: int = 64  # side of the windows read
    seed: int = 0  # seed of the pixel sample


@dataclass
class SynthConfig:
    out: Optional[str] = None  # the folder to write
    kind: Optional[str] = None  # image-mask | change
    n: int = 64  # number of images or pairs
    size: int = 256  # side of each image in pixels
    seed: int = 0  # the same seed writes the same files
    classes: str = "building"  # image-mask masks: building (0/255) | all (class ids)


@dataclass
class StackConfig:
    a: Optional[str] = None  # first-date raster
    b: Optional[str] = None  # second-date raster, resampled onto A's grid when it lies on another
    out: Optional[str] = None  # the .vrt to write


_DATA_CHOICES = {"data.kind": KINDS, "data.layout.name": ("auto", "custom", *layout_names())}


CHECK_SPEC = CommandSpec("densechange check", "Report every problem of a dataset folder before training; exit 1 "
                         "when a problem would stop training.", CheckConfig, ("data.root",), ("data.root",),
                         {**_DATA_CHOICES, "data.mask_mode": MASK_MODES})

SYNTH_SPEC = CommandSpec("densechange synth", "Write the embedded synthetic data to disk: image-mask pairs or change "
                         "pairs with real and pseudo-changes, deterministic for a seed.", SynthConfig, ("out",),
                         ("out", "kind"), {"kind": ("image-mask", "change"), "classes": ("building", "all")})

TILE_SPEC = CommandSpec("densechange tile", "Cut any dataset the toolkit reads into tiles (tiled GeoTIFF or PNG) in "
                        "the classic A/B/label or image/mask layout, labels decoded, splits kept.", TileConfig,
                        ("data.root", "out"), ("data.root", "out"), {**_DATA_CHOICES, "format": FORMATS})

STACK_SPEC = CommandSpec("densechange stack", "Both dates as one virtual raster: A's bands, then B's on A's grid.",
                         StackConfig, ("a", "b", "out"), ("a", "b", "out"))

STATS_SPEC = CommandSpec("densechange stats", "Per-band mean and std of a dataset's images on the training scale, "
                         "printed as data.mean/data.std keys to paste after a config.", StatsConfig, ("data.root",),
                         ("data.root",), _DATA_CHOICES)


def described_layout(data: DictConfig) -> tuple[str, Layout | str | None]:
    """The kind and layout that ``data.kind`` and the ``data.layout.*`` keys describe.

    Folder keys tell the kind (``image``/``mask``: image-mask pairs; ``a``/``b``/``label``: change
    pairs); keys both kinds have need ``data.kind`` or a named layout to say which.
    """
    options: dict[str, Any] = {k: v for k, v in to_dict(data.layout).items() if v is not None}
    name, kind = options.get("name", "auto"), data.kind
    keys = set(options) - {"name"}
    if kind == "auto":
        kind = "image-mask" if keys & {"image", "mask"} else "change" if keys & {"a", "b", "label", "labels"} else kind
    if kind == "auto" and keys:
        if name in ("auto", "custom"):
            raise DatasetError(f"data.layout.{sorted(keys)[0]} does not say whether the folder holds change pairs or "
                               "image-mask pairs: add data.kind=change or data.kind=image-mask, or name the folders "
                               "(data.layout.a/b/label, or data.layout.image/mask).")
        kind = layout_named(name).kind
    if kind == "auto":
        return kind, None if name in ("auto", "custom") else name
    other = keys - set(LAYOUT_KEYS[kind])
    if other:
        raise DatasetError(f"data.layout.{sorted(other)[0]} is not a key of {kind} layouts; their keys are "
                           f"{', '.join(LAYOUT_KEYS[kind])}.")
    return kind, configured_layout(kind, options)


def _resolved(data: DictConfig) -> tuple[str, Layout | None]:
    kind, layout = described_layout(data)
    return kind, layout_named(layout) if isinstance(layout, str) else layout


def check(argv: Sequence[str]) -> int:
    cfg = parse_command(CHECK_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.datasets.tools.check import check_dataset

    d = cfg.data
    allow_network_sources(d.allow_network_sources)
    kind, layout = described_layout(d)
    report = check_dataset(d.root, kind, ignore_value=d.ignore_value, mask_mode=d.mask_mode,
                           num_classes=d.num_classes, layout=layout, split=d.split)
    print(report.format())
    return 1 if report.fatal else 0


def synth(argv: Sequence[str]) -> int:
    cfg = parse_command(SYNTH_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.datasets.synthetic.samples import write_change_dataset, write_image_mask_dataset

    if cfg.kind == "image-mask":
        root = write_image_mask_dataset(cfg.out, cfg.n, cfg.size, cfg.seed, cfg.classes)
    else:
        root = write_change_dataset(cfg.out, cfg.n, cfg.size, cfg.seed)
    print(f"wrote {cfg.n} synthetic {cfg.kind} samples of {cfg.size}x{cfg.size} to {root}")
    return 0


def tile(argv: Sequence[str]) -> int:
    from densechange.datasets.tools.tile import TileSpec, tile_dataset

    cfg = parse_command(TILE_SPEC, argv)
    if cfg is None:
        return 0
    d = cfg.data
    allow_network_sources(d.allow_network_sources)
    kind, layout = _resolved(d)
    done = tile_dataset(d.root, cfg.out, TileSpec(cfg.size, cfg.overlap, cfg.format), kind=kind,
                        layout=layout, ignore_value=d.ignore_value, skip_incomplete=d.skip_incomplete, progress=True)
    parts = ", ".join(f"{part if part != '.' else 'dataset folder'}: {n}" for part, n in done.parts.items())
    print(f"read layout {done.layout}: cut {done.samples} samples ({done.files} files) into {done.tiles} tiles of "
          f"up to {cfg.size}x{cfg.size} in {cfg.out} ({parts})")
    return 0


def stack(argv: Sequence[str]) -> int:
    cfg = parse_command(STACK_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.datasets.tools.stack import stack_pair

    done = stack_pair(cfg.a, cfg.b, cfg.out)
    if done.note:
        print(f"note: {done.note}")
    half = done.bands // 2
    print(f"wrote {done.path}: {done.bands} bands, 1-{half} from {cfg.a} and {half + 1}-{done.bands} from {cfg.b}")
    return 0


def stats(argv: Sequence[str]) -> int:
    cfg = parse_command(STATS_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.datasets.tools.stats import dataset_stats

    d = cfg.data
    allow_network_sources(d.allow_network_sources)
    kind, layout = _resolved(d)
    result = dataset_stats(d.root, kind, d.split, layout=layout, pixels=cfg.pixels, window=cfg.window, seed=cfg.seed)
    how = "every pixel" if result.exact else f"a seeded sample (seed {cfg.seed}) in {cfg.window}-px windows"
    print(f"{result.pixels} valid pixels of {result.rasters} rasters of {result.where}: {how}; "
          f"{len(result.mean)} bands ({', '.join(result.dtypes)}), on the training scale (integers / dtype max)")
    if len(result.mean) != 3:
        print(f"data.in_chans={len(result.mean)}")
    print(result.overrides())
    return 0
