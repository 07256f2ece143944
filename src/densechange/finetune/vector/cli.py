"""``densechange vectorize``: change polygons from a change map, and the same step at the end of ``predict``.

    densechange vectorize change.tif changes.gpkg
    densechange vectorize change.tif changes.fgb min_area=50 simplify=0.5 connectivity=8 report=report.html
    densechange vectorize change_probability.tif changes.gpkg threshold=0.7
    densechange predict checkpoint=RUN/best.safetensors a=t1.tif b=t2.tif out=change.tif vector.out=changes.gpkg

One polygon per connected change region (4-connected by default: pixels that meet only at a corner
are separate regions; ``connectivity=8`` joins them), traced block by block in flat memory and
written in the change map's CRS. See :mod:`densechange.finetune.vector` for the parts.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from omegaconf import DictConfig

from densechange.atomic import scratch_path
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.config import to_dict
from densechange.finetune.vector.options import VectorizeConfig, VectorOptions

SPEC = CommandSpec(
    "densechange vectorize",
    "Polygons of the connected change regions of a change map, with their area, perimeter, probability and "
    "distance, as a GeoPackage (QGIS style included), FlatGeobuf, GeoJSON or GeoParquet file; optionally an HTML "
    "report. Needs the vector extra: pip install 'densechange[vector]'.",
    VectorizeConfig,
    positionals=("change", "out"),
    required=("change", "out"),
    examples=("densechange vectorize change.tif changes.gpkg",
              "densechange vectorize change.tif changes.gpkg a=t1.tif b=t2.tif min_area=50 report=report.html",
              "densechange vectorize change_probability.tif changes.fgb threshold=0.7 connectivity=8"),
)


def options_of(cfg: Mapping[str, Any]) -> VectorOptions:
    """The :class:`VectorOptions` among a config's keys."""
    return VectorOptions(**{f.name: cfg[f.name] for f in dataclasses.fields(VectorOptions)})


@dataclass
class Sources:
    """What surrounds a change map: the rasters beside it, the dates and model that made it, the run's settings."""

    probability: bool | str | None = None  # a path, false (none) or null (the file beside the map, if any)
    distance: bool | str | None = None
    a: str | None = None
    b: str | None = None
    checkpoint: str | None = None
    settings: Mapping[str, Any] | None = None  # what the report lists; default: the options


def run(change: Path, out: Path, options: VectorOptions, sources: Sources) -> str:
    """Vectorise one change map (and write its report when asked); the console line."""
    from densechange.finetune.vector.report import write_report
    from densechange.finetune.vector.vectorize import resolve, vectorize

    a, b = sources.a, sources.b
    dates = (Path(a).name if a else "", Path(b).name if b else "")
    summary = vectorize(resolve(change, sources.probability, sources.distance, dates), options, out)
    line = f"{out}: {summary.features:,} polygons"
    if summary.area_m2 is not None:
        line += f", {summary.area_m2 / 1e4:,.4f} ha changed"
    if options.report:
        write_report(Path(options.report), summary, options.layer or out.stem, {"A": a, "B": b}, sources.checkpoint,
                     sources.settings or dataclasses.asdict(options))
        line += f"; report {options.report}"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    sources = Sources(cfg.probability, cfg.distance, cfg.a, cfg.b, cfg.checkpoint, to_dict(cfg))
    print(run(Path(cfg.change), Path(cfg.out), options_of(cfg), sources))
    return 0


def check_before_predict(options: DictConfig, folder: bool) -> None:
    """``predict``'s ``vector.*`` checked before the network runs: the options and the format."""
    from densechange.finetune.vector.vectorize import check
    from densechange.finetune.vector.write import driver_for

    check(options_of(options))
    if not folder:  # in folder mode vector.out is a folder of GeoPackages
        driver_for(Path(options.out))


@contextlib.contextmanager
def probability_for(options: DictConfig, change: Path, probability: Path | None) -> Iterator[Path | None]:
    """``predict``'s probability file for the polygons: the one asked for, else a scratch file removed after."""
    if options.out is None or probability is not None:
        yield probability
        return
    with scratch_path(change, suffix=".tif") as tmp:
        yield tmp


def after_predict(cfg: DictConfig, a: Path, b: Path, change: Path, probability: Path | None,
                  distance: Path | None, folder: bool) -> str:
    """``predict``'s ``vector.*``: polygons of the map just written (in folder mode, one file per pair)."""
    options = options_of(cfg.vector)
    out = Path(options.out)
    if folder:  # vector.out (and vector.report) name folders: one GeoPackage (and report) per pair
        out = out / f"{change.stem}.gpkg"
        if options.report:
            options = dataclasses.replace(options, report=str(Path(options.report) / f"{change.stem}.html"))
    sources = Sources(str(probability) if probability else False, str(distance) if distance else False, str(a), str(b),
                      cfg.checkpoint, to_dict(cfg))
    return run(change, out, options, sources)


if __name__ == "__main__":
    run_cli(main)
