"""Command line of the datasets package (``densechange check | synth | tile | stack``).

    densechange check ROOT [--kind auto|image-mask|change] [--ignore-value V] [--mask-mode M] [--layout NAME]
                           [data.layout.KEY=VALUE ...]
    densechange synth OUT --kind image-mask|change [--n N] [--size S] [--seed K] [--classes building|all]
    densechange tile SRC DST --size 512 [--overlap N] [--format tif|png] [--kind K] [--layout NAME] [--ignore-value V]
                         [--skip-incomplete] [data.layout.KEY=VALUE ...]
    densechange stack A.tif B.tif OUT.vrt
    densechange stats ROOT [--split train] [--pixels N] [--window W] [--seed K] [--kind K] [--layout NAME] [data.layout.KEY=VALUE ...]

``check`` prints every problem and a summary, and exits 1 when a problem would stop training;
``stats`` prints per-band mean and std as ``data.mean=[...] data.std=[...]`` to paste after a config;
``tile`` writes any layout as the toolkit's classic one, labels decoded. They read the layouts training reads: the known public ones, or the tree that the same
``data.layout.*`` overrides as the training config describe (``data.layout.a=before``).
"""
from __future__ import annotations

import argparse
import sys

from densechange.datasets.tools.check import KINDS, check_dataset
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import MASK_MODES
from densechange.datasets.readers.layouts import LAYOUT_KEYS, Layout, configured_layout, layout_named, layout_names
from densechange.datasets.tools.stack import stack_pair
from densechange.datasets.tools.stats import dataset_stats
from densechange.datasets.synthetic.samples import write_change_dataset, write_image_mask_dataset
from densechange.datasets.tools.tile import FORMATS, TileSpec, tile_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densechange", description="Inspect or create datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="report every problem of a dataset folder before training")
    check.add_argument("root")
    check.add_argument("--kind", choices=KINDS, default="auto")
    check.add_argument("--ignore-value", type=int, default=None, help="stored mask value of ignored pixels")
    check.add_argument("--mask-mode", choices=MASK_MODES, default="auto")
    check.add_argument("--num-classes", type=int, default=None, help="bound on class ids of image-mask datasets")
    check.add_argument("--layout", choices=("auto", "custom", *layout_names()), default="auto",
                       help="the layout to read (default: detect it); data.layout.KEY=VALUE describes another tree")
    check.add_argument("overrides", nargs="*", metavar="data.layout.KEY=VALUE",
                       help="folder names of a described layout, as in the training config: "
                            "a, b, label (change) or image, mask (image-mask); labels, groups, lists")
    synth = sub.add_parser("synth", help="write a synthetic dataset to disk")
    synth.add_argument("out")
    synth.add_argument("--kind", choices=("image-mask", "change"), required=True)
    synth.add_argument("--n", type=int, default=64, help="number of images or pairs")
    synth.add_argument("--size", type=int, default=256)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--classes", choices=("building", "all"), default="building", help="image-mask masks")
    tile = sub.add_parser("tile", help="cut any dataset the toolkit reads into tiles (tiled GeoTIFF or PNG) in the "
                          "classic A/B/label or image/mask layout, labels decoded, splits kept")
    tile.add_argument("src")
    tile.add_argument("dst")
    tile.add_argument("--size", type=int, default=512, help="tile side in pixels (default 512)")
    tile.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring tiles (default 0)")
    tile.add_argument("--format", choices=FORMATS, default="tif", help="tif: tiled GeoTIFF (default); png")
    tile.add_argument("--kind", choices=KINDS, default="auto")
    tile.add_argument("--layout", choices=("auto", "custom", *layout_names()), default="auto",
                      help="the layout to read (default: detect it)")
    tile.add_argument("--ignore-value", type=int, default=None, help="stored label value of pixels to ignore")
    tile.add_argument("--skip-incomplete", action="store_true", help="skip samples that lack a file (default: an error)")
    tile.add_argument("overrides", nargs="*", metavar="data.layout.KEY=VALUE", help="folders of a described layout")
    stats = sub.add_parser("stats", help="per-band mean and std of a dataset's images, as data.mean/data.std overrides")
    stats.add_argument("root")
    stats.add_argument("--split", default="train", help="split whose images count (default train; a folder "
                       "without splits counts every image)")
    stats.add_argument("--pixels", type=int, default=2_000_000, help="pixels sampled (default 2,000,000; a smaller "
                       "dataset is read whole and the result is exact)")
    stats.add_argument("--window", type=int, default=64, help="side of the windows read (default 64)")
    stats.add_argument("--seed", type=int, default=0)
    stats.add_argument("--kind", choices=KINDS, default="auto")
    stats.add_argument("--layout", choices=("auto", "custom", *layout_names()), default="auto")
    stats.add_argument("overrides", nargs="*", metavar="data.layout.KEY=VALUE", help="folders of a described layout")
    stack = sub.add_parser("stack", help="both dates as one virtual raster (A's bands, then B's on A's grid)")
    stack.add_argument("a", help="first-date raster")
    stack.add_argument("b", help="second-date raster (resampled onto A's grid when it lies on another)")
    stack.add_argument("out", help="the .vrt to write")
    return parser


def _value(text: str) -> str | bool | None:
    lowered = text.lower()
    return None if lowered in ("null", "none", "") else True if lowered == "true" else False if lowered == "false" else text


def described_layout(kind: str, name: str, overrides: list[str]) -> tuple[str, Layout | str | None]:
    """The kind and layout that ``--layout`` and ``data.layout.KEY=VALUE`` overrides describe."""
    options: dict[str, object] = {"name": name}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("data.layout."):
            raise DatasetError(f"{item!r}: expected data.layout.KEY=VALUE (KEY one of "
                               f"{sorted(set(LAYOUT_KEYS['change']) | set(LAYOUT_KEYS['image-mask']))}).")
        options[key.removeprefix("data.layout.")] = _value(value)
    keys = set(options) - {"name"}
    if kind == "auto":
        kind = "image-mask" if keys & {"image", "mask"} else "change" if keys & {"a", "b", "label", "labels"} else kind
    if kind == "auto" and keys:  # only keys both kinds have (scene, lists, groups), or a mistyped one
        valid = sorted((set(LAYOUT_KEYS["change"]) | set(LAYOUT_KEYS["image-mask"])) - {"name"})
        unknown = sorted(keys - set(valid))
        if unknown:
            raise DatasetError(f"data.layout has no key {unknown[0]!r}; the keys are {', '.join(valid)}.")
        if name in ("auto", "custom"):
            raise DatasetError(f"data.layout.{sorted(keys)[0]} does not say whether the folder holds change pairs or "
                               "image-mask pairs: add --kind change or --kind image-mask, or name the folders "
                               "(data.layout.a/b/label, or data.layout.image/mask).")
        kind = layout_named(name).kind
    if kind == "auto":
        return kind, None if name in ("auto", "custom") else name
    return kind, configured_layout(kind, options)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may also follow the options (``tile SRC DST --size 512 data.layout.a=before``)
    stray = [item for item in extra if "=" not in item or item.startswith("-")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        if args.command == "check":
            kind, layout = described_layout(args.kind, args.layout, args.overrides)
            report = check_dataset(args.root, kind, ignore_value=args.ignore_value, mask_mode=args.mask_mode,
                                   num_classes=args.num_classes, layout=layout)
            print(report.format())
            return 1 if report.fatal else 0
        if args.command in ("stats", "tile"):
            kind, layout = described_layout(args.kind, args.layout, args.overrides)
            if isinstance(layout, str):
                layout = layout_named(layout)
        if args.command == "stats":
            result = dataset_stats(args.root, kind, args.split, layout=layout, pixels=args.pixels, window=args.window,
                                   seed=args.seed)
            how = "every pixel" if result.exact else f"a seeded sample (seed {args.seed}) in {args.window}-px windows"
            print(f"{result.pixels} valid pixels of {result.rasters} rasters of {result.where}: {how}; "
                  f"{len(result.mean)} bands ({', '.join(result.dtypes)}), on the training scale (integers / dtype max)")
            if len(result.mean) != 3:
                print(f"data.in_chans={len(result.mean)}")
            print(result.overrides())
            return 0
        if args.command == "tile":
            done = tile_dataset(args.src, args.dst, TileSpec(args.size, args.overlap, args.format), kind=kind,
                                layout=layout, ignore_value=args.ignore_value, skip_incomplete=args.skip_incomplete,
                                progress=True)
            parts = ", ".join(f"{part if part != '.' else 'dataset folder'}: {n}" for part, n in done.parts.items())
            print(f"read layout {done.layout}: cut {done.samples} samples ({done.files} files) into {done.tiles} tiles of "
                  f"up to {args.size}x{args.size} in {args.dst} ({parts})")
            return 0
        if args.command == "stack":
            done = stack_pair(args.a, args.b, args.out)
            if done.note:
                print(f"note: {done.note}")
            half = done.bands // 2
            print(f"wrote {done.path}: {done.bands} bands, 1-{half} from {args.a} and {half + 1}-{done.bands} from {args.b}")
            return 0
        if args.kind == "image-mask":
            root = write_image_mask_dataset(args.out, args.n, args.size, args.seed, args.classes)
        else:
            root = write_change_dataset(args.out, args.n, args.size, args.seed)
        print(f"wrote {args.n} synthetic {args.kind} samples of {args.size}x{args.size} to {root}")
        return 0
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

