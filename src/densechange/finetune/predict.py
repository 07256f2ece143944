"""Predict change maps with a finetuned change model, for one pair of scenes or two folders of pairs.

    densechange predict checkpoint=RUN/best.safetensors a=t1.tif b=t2.tif out=change.tif
    densechange predict checkpoint=RUN/best.safetensors a=t1.tif b=t2.tif out=change.tif cog=true \\
        probability=true distance=distance.tif
    densechange predict checkpoint=RUN/best.safetensors a=t1/ b=t2/ out=changes/

Scenes of any size, in any raster format GDAL reads, are streamed block by block in flat memory
(:mod:`densechange.finetune.inference.streaming`): overlapping windows blended at the seams (the
``window.*`` keys, the one default window of evaluation, validation and export), the output written as a tiled, compressed GeoTIFF with A's CRS, transform and
no-data (``cog=true``: a Cloud-Optimised GeoTIFF with overviews; a ``.png`` name: a PNG, with its
georeferencing in a ``.png.aux.xml`` sidecar). When both dates are georeferenced on different
grids, B is resampled onto A's grid on the fly.

The change map is 0/255. ``distance=FILE`` also writes the metric branch's distance map (0:
identical embeddings, 254: opposite ones) and ``probability=FILE`` (or ``true``: beside ``out``) the
change probability (0..254); both use 255 for no-data. In folder mode outputs take the input's name,
as ``.tif`` for TIFF inputs, else ``.png``.

``vector.out=changes.gpkg`` also writes the change polygons (``densechange vectorize``'s keys under
``vector.*``; in folder mode ``vector.out`` is a folder of one GeoPackage per pair).

A ``.onnx`` checkpoint (``densechange export``, form ``pair`` or ``stacked``) runs through the same
streaming path on ONNX Runtime (``pip install 'densechange[onnx]'``), fed exactly what the PyTorch
model is fed, so both give the same maps.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from densechange.datasets.io.sources import allow_network_sources
from densechange.datasets import DatasetError, list_pairs
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.distributed import resolve_device
from densechange.engine.precision import resolve_precision

from densechange.finetune.config import PREDICT_CHOICES, PredictConfig
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.onnx.runtime import OnnxPredictor
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene
from densechange.finetune.inference.windows import BATCH_PIXELS

_TIFF = (".tif", ".tiff")
_OUT = (".png", *_TIFF)


SPEC = CommandSpec(
    "densechange predict",
    "Change maps from a finetuned change model, for one pair of scenes or two folders of pairs. window.batch_size=null "
    f"sizes batches per device: {BATCH_PIXELS['cpu']:,} pixels' worth on a CPU, {BATCH_PIXELS['cuda']:,} on a GPU.",
    PredictConfig,
    required=("checkpoint", "a", "b", "out"),
    choices=PREDICT_CHOICES,
    examples=("densechange predict checkpoint=RUN/best.safetensors a=t1.tif b=t2.tif out=change.tif",
              "densechange predict checkpoint=RUN/best.safetensors a=t1/ b=t2/ out=changes/ distance=distances/ "
              "probability=true"),
)


def _checked(path: Path) -> Path:
    if path.suffix.lower() not in _OUT:
        raise DatasetError(f"{path}: write change maps as .png, .tif or .tiff.")
    return path


def _beside(out: Path, kind: str) -> Path:
    return out.with_name(f"{out.stem}_{kind}{out.suffix}")


def jobs(cfg: DictConfig) -> list[tuple[Path, Path, SceneOutputs]]:
    """``(a, b, outputs)`` for every pair the config names."""
    a, b, out = Path(cfg.a), Path(cfg.b), Path(cfg.out)
    dist = Path(cfg.distance) if cfg.distance else None
    beside = cfg.probability is True  # true: beside out; a path: there; null or false: none
    prob = Path(cfg.probability) if isinstance(cfg.probability, str) and cfg.probability else None
    wanted = beside or prob is not None
    if a.is_dir() != b.is_dir():
        raise DatasetError(f"a={a} and b={b}: pass two image files or two folders, not one of each.")
    if not a.is_dir():
        for p in (a, b):
            if not p.is_file():
                raise DatasetError(f"{p}: image not found.")
        probability = _checked(prob) if prob is not None else _beside(out, "probability") if beside else None
        return [(a, b, SceneOutputs(_checked(out), _checked(dist) if dist else None, probability, cfg.cog))]
    if out.suffix.lower() in _OUT:
        raise DatasetError(f"out={out}: when a and b are folders, out is a folder, not an image file.")
    result = []
    for pa, pb, name in list_pairs(a, b):
        file = f"{name}{'.tif' if pa.suffix.lower() in _TIFF or cfg.cog else '.png'}"
        probability = (prob or out.with_name(out.name + "_probability")) / file if wanted else None
        result.append((pa, pb, SceneOutputs(out / file, dist / file if dist else None, probability, cfg.cog)))
    return result


def load_predictor(cfg: DictConfig) -> Predictor:
    """The backend by the checkpoint's suffix: ONNX Runtime for ``.onnx``, else PyTorch."""
    windows = OmegaConf.to_object(cfg.window)
    if Path(cfg.checkpoint).suffix.lower() == ".onnx":
        precision = "fp32" if cfg.precision == "auto" else cfg.precision  # the graph's own float32
        if cfg.compile:
            raise DatasetError(f"compile=true applies to PyTorch checkpoints; {cfg.checkpoint} runs on ONNX Runtime.")
        return OnnxPredictor.from_file(cfg.checkpoint, device=cfg.device, precision=precision, size=windows.size,
                                       overlap=windows.overlap, margin=windows.margin, batch_size=windows.batch_size)
    precision = resolve_precision(cfg.precision, resolve_device(cfg.device))  # auto: bf16 only where native
    return ChangePredictor.from_checkpoint(cfg.checkpoint, windows, device=cfg.device, precision=precision,
                                           compile=cfg.compile, trust_edited=cfg.trust_edited)[0]


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    allow_network_sources(cfg.allow_network_sources)
    todo = jobs(cfg)
    if cfg.vector.out is not None:  # the polygon libraries (the vector extra) load only when asked for
        from densechange.finetune.vector.cli import after_predict, check_before_predict, probability_for

        check_before_predict(cfg.vector, folder=Path(cfg.a).is_dir())
    predictor = load_predictor(cfg)
    for pa, pb, outputs in todo:
        with contextlib.ExitStack() as stack:
            if cfg.vector.out is not None:  # polygons carry the probability: a scratch file unless one is asked for
                outputs = replace(outputs, probability=stack.enter_context(
                    probability_for(cfg.vector, outputs.change, outputs.probability)))
            stats = predict_scene(predictor, pa, pb, outputs, progress=cfg.progress and len(todo) == 1)
            print(f"{outputs.change}: {stats['changed'] * 100:.2f}% changed, {stats['valid'] * 100:.1f}% with data, "
                  f"{stats['megapixels_per_s']:.2f} Mpx/s")
            if cfg.vector.out is not None:
                print(after_predict(cfg, pa, pb, outputs.change, outputs.probability, outputs.distance,
                                    folder=Path(cfg.a).is_dir()))
    return 0


if __name__ == "__main__":
    run_cli(main)
