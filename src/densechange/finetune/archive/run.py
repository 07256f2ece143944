"""One process's share of a prediction run: its units in dealt order, each recorded in the manifest when whole."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from densechange.datasets.io.remote import RasterRef
from densechange.engine.runlog import append_locked

from densechange.finetune.archive.manifest import Manifest, file_record
from densechange.finetune.archive.parts import KEYS, join, part_outputs
from densechange.finetune.archive.plan import Plan, Unit
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene

LOG = "predict.jsonl"


@dataclass
class Share:
    """What one process did: units by kind, pixels predicted, seconds busy."""

    scenes: int = 0
    bands: int = 0
    joins: int = 0
    pixels: int = 0
    busy_s: float = 0.0


def attempt() -> int:
    """Which attempt of a torchrun worker group this is (0 first; restarts count up)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def record(plan: Plan, unit: Unit, outputs: SceneOutputs, rank: int, seconds: float,
           rows: tuple[int, int] | None = None) -> None:
    """Append the manifest record of finished work whose files are ``outputs``."""
    Manifest(plan.folder).append({
        "kind": "band" if rows is not None else "scene", "key": plan.keys[unit.job],
        "rows": list(rows) if rows is not None else None, **plan.expected[unit.job].fields(),
        "outputs": {k: file_record(getattr(outputs, k)) for k in KEYS if getattr(outputs, k) is not None},
        "rank": rank, "attempt": attempt(), "seconds": round(seconds, 3), "time": time.time()})


def run_share(cfg: DictConfig, predictor: Predictor, plan: Plan, rank: int, progress: bool) -> Share:
    """Do rank ``rank``'s units of ``plan``; a band's writer joins the scene when its bands are all written."""
    share = Share()
    for index in plan.shares[rank]:
        unit = plan.units[index]
        job = plan.jobs[unit.job]
        start = time.perf_counter()
        if unit.kind == "scene":
            with job.reading(cfg):
                stats = _scene(cfg, predictor, job.a, job.b, job.outputs, progress)
            record(plan, unit, job.outputs, rank, time.perf_counter() - start)
            print(f"{job.outputs.change}: {stats['changed'] * 100:.2f}% changed, {stats['valid'] * 100:.1f}% with "
                  f"data, {stats['megapixels_per_s']:.2f} Mpx/s")
            share.scenes += 1
        elif unit.kind == "band":
            band, key = unit.band, plan.keys[unit.job]
            parts = part_outputs(plan.folder, key, job.outputs, band)
            with job.reading(cfg):
                stats = predict_scene(predictor, job.a, job.b, parts, progress=progress, band=(band.first, band.last),
                                      region=cfg.region)
            record(plan, unit, parts, rank, time.perf_counter() - start, (band.top, band.bottom))
            print(f"{job.outputs.change} rows {band.top}-{band.bottom}: {stats['changed'] * 100:.2f}% changed, "
                  f"{stats['megapixels_per_s']:.2f} Mpx/s")
            share.bands += 1
        share.pixels += unit.cost
        if unit.kind in ("band", "join"):
            joined = time.perf_counter()
            if join(plan.folder, plan.keys[unit.job], job.outputs, plan.bands[unit.job],
                    lambda: record(plan, unit, job.outputs, rank, time.perf_counter() - joined)):
                print(f"{job.outputs.change}: joined from {len(plan.bands[unit.job])} bands")
                share.joins += 1
        share.busy_s += time.perf_counter() - start
    return share


def _scene(cfg: DictConfig, predictor: Predictor, a: Path | RasterRef, b: Path | RasterRef, outputs: SceneOutputs,
           progress: bool) -> dict[str, float]:
    """One whole scene, and its change polygons when ``vector.out`` is set."""
    with contextlib.ExitStack() as stack:
        if cfg.vector.out is not None:  # the polygon libraries (the vector extra) load only when asked for
            from densechange.finetune.vector.cli import after_predict, probability_for

            # polygons carry the probability: a scratch file unless one is asked for
            outputs = replace(outputs, probability=stack.enter_context(
                probability_for(cfg.vector, outputs.change, outputs.probability)))
        stats = predict_scene(predictor, a, b, outputs, progress=progress, region=cfg.region)
        if cfg.vector.out is not None:
            print(after_predict(cfg, a, b, outputs.change, outputs.probability, outputs.distance,
                                folder=bool(cfg.pairs) or Path(cfg.a).is_dir()))
    return stats


def log_share(folder: Path, rank: int, world: int, share: Share, idle_s: float, skipped: int) -> str:
    """Append this process's record to ``predict.jsonl`` in the output folder; the line it prints."""
    append_locked(Path(folder) / LOG, {"rank": rank, "world_size": world, "attempt": attempt(), "scenes": share.scenes,
                                      "bands": share.bands, "joins": share.joins, "pixels": share.pixels,
                                      "busy_s": round(share.busy_s, 3), "idle_s": round(idle_s, 3),
                                      "skipped": skipped, "time": time.time()})
    return (f"rank {rank}/{world}: {share.scenes} scenes, {share.bands} bands, {share.joins} joins, "
            f"{share.pixels / 1e6:.1f} Mpx, busy {share.busy_s:.1f} s, idle {idle_s:.1f} s")
