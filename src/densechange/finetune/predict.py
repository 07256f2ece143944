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

``a`` and ``b`` may be URLs (``https://``, ``http://``, ``s3://``, ``gs://``), read by range requests:
only the tiles under each window are fetched (:mod:`densechange.datasets.io.remote`; ``remote.*``:
retries and timeout), or STAC items whose ``bands=[red,green,blue,nir]`` are read
(:mod:`densechange.datasets.io.stac`); so may the rows of a pairs file. ``region=[top,left,height,width]``
predicts a part of A.

Archives (:mod:`densechange.finetune.archive`): ``pairs=FILE`` lists pairs ``a,b[,out]`` instead
of ``a``/``b``; under ``torchrun`` the scenes (and the bands of scenes larger than
``split.min_pixels``) are dealt to the processes, largest first, and the outputs equal those of one
process. ``manifest.jsonl`` in the output folder records each finished output, so a rerun, or a
group that torchrun restarts, skips what is done and redoes what another model or other settings
made (``resume=false``: redo everything).

    torchrun --nproc_per_node=4 -m densechange.finetune.predict checkpoint=RUN/best.safetensors \\
        pairs=pairs.csv out=changes/ device=cuda
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from densechange.datasets import DatasetError
from densechange.datasets.io.sources import allow_network_sources
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.distributed import all_gather_object, broadcast_object, init_distributed, shutdown
from densechange.engine.precision import resolve_precision

from densechange.finetune.archive.jobs import listing, output_folder
from densechange.finetune.archive.plan import Plan, make_plan
from densechange.finetune.archive.run import log_share, run_share
from densechange.finetune.config import PREDICT_CHOICES, PredictConfig
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.onnx.runtime import OnnxPredictor
from densechange.finetune.inference.windows import BATCH_PIXELS


SPEC = CommandSpec(
    "densechange predict",
    "Change maps from a finetuned change model, for one pair of scenes, two folders of pairs or a list of pairs "
    "(pairs=FILE); under torchrun the scenes are dealt to the processes. window.batch_size=null "
    f"sizes batches per device: {BATCH_PIXELS['cpu']:,} pixels' worth on a CPU, {BATCH_PIXELS['cuda']:,} on a GPU.",
    PredictConfig,
    required=("checkpoint", "out"),
    choices=PREDICT_CHOICES,
    examples=("densechange predict checkpoint=RUN/best.safetensors a=t1.tif b=t2.tif out=change.tif",
              "densechange predict checkpoint=RUN/best.safetensors a=t1/ b=t2/ out=changes/ distance=distances/ "
              "probability=true",
              "densechange predict checkpoint=RUN/best.safetensors pairs=pairs.csv out=changes/"),
)


def load_predictor(cfg: DictConfig, device: torch.device) -> Predictor:
    """The backend by the checkpoint's suffix: ONNX Runtime for ``.onnx``, else PyTorch on ``device``."""
    windows = OmegaConf.to_object(cfg.window)
    if Path(cfg.checkpoint).suffix.lower() == ".onnx":
        precision = "fp32" if cfg.precision == "auto" else cfg.precision  # the graph's own float32
        if cfg.compile:
            raise DatasetError(f"compile=true applies to PyTorch checkpoints; {cfg.checkpoint} runs on ONNX Runtime.")
        return OnnxPredictor.from_file(cfg.checkpoint, device=cfg.device, precision=precision, size=windows.size,
                                       overlap=windows.overlap, margin=windows.margin, batch_size=windows.batch_size)
    precision = resolve_precision(cfg.precision, device)  # auto: bf16 only where native
    return ChangePredictor.from_checkpoint(cfg.checkpoint, windows, device=device, precision=precision,
                                           compile=cfg.compile, trust_edited=cfg.trust_edited)[0]


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    allow_network_sources(cfg.allow_network_sources)  # inside VRTs; the URLs named in a=/b= are read anyway
    info = init_distributed(cfg.device, cfg.dist_timeout_s)  # under torchrun: gloo on CPUs, nccl on this rank's GPU
    try:
        if cfg.vector.out is not None:  # the polygon libraries (the vector extra) load only when asked for
            from densechange.finetune.vector.cli import check_before_predict

            check_before_predict(cfg.vector, folder=bool(cfg.pairs) or bool(cfg.a) and Path(cfg.a).is_dir())
        predictor = load_predictor(cfg, info.device)
        with listing(cfg):  # a STAC item's JSON is fetched with GDAL's network options
            plan = make_plan(cfg, predictor, info.world_size) if info.is_main else None
        plan = broadcast_object(plan)  # every rank deals from the manifest as rank 0 read it
        assert isinstance(plan, Plan)
        if info.is_main:
            for message in plan.messages:
                print(message)
            if plan.skipped:
                print(f"{plan.skipped} of {len(plan.jobs)} outputs already made with this model and these settings "
                      f"(see {output_folder(cfg) / 'manifest.jsonl'}): skipped")
        share = run_share(cfg, predictor, plan, info.rank, progress=cfg.progress and info.is_main and len(plan.units) == 1)
        finish = time.time()
        last = max(all_gather_object(finish))  # the one collective after the work: when the last rank finished
        if info.distributed or plan.units:
            print(log_share(plan.folder, info.rank, info.world_size, share, last - finish, plan.skipped))
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    run_cli(main)
