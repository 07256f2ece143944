"""The plan of a prediction run: its units of work (whole scenes, bands of large ones, joins), less what is done.

Rank 0 makes the plan after reading the manifest and sends it to every process, so all deal from
the same state of the output folder. A scene larger than ``split.min_pixels`` is cut into bands of
whole block rows (:func:`band_plan`), from ``split.band_rows`` and the windows alone: the same
bands whatever the number of processes, so a run restarted with another world size resumes band by
band. A unit's cost is its pixel area, read from the raster headers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from densechange.checkpoints.download import sha256_file
from densechange.datasets.io.remote import RasterRef
from densechange.engine.errors import ConfigError

from densechange.finetune.archive.deal import deal
from densechange.finetune.archive.jobs import Job, list_jobs, output_folder, scene_size
from densechange.finetune.archive.manifest import Expected, Manifest, record_id
from densechange.finetune.archive.parts import KEYS, Band, clear, part_outputs
from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.scene import block_rows_of, block_windows, lead_start
from densechange.finetune.inference.streaming import SceneOutputs
from densechange.finetune.inference.windows import WindowGrid, WindowSettings


@dataclass(frozen=True)
class Unit:
    """One piece of work: a whole scene, one band of a split scene, or the join of a split scene's bands."""

    job: int
    kind: str  # scene | band | join
    cost: int  # pixels
    band: Band | None = None


@dataclass
class Plan:
    """Every job with its manifest key, what it must match, its bands when split; the units and their dealing."""

    folder: Path
    jobs: list[Job]
    keys: list[str]
    expected: list[Expected]
    bands: dict[int, list[Band]] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)
    shares: list[list[int]] = field(default_factory=list)
    skipped: int = 0
    messages: list[str] = field(default_factory=list)


def band_plan(height: int, width: int, windows: WindowSettings, stride: int, band_rows: int) -> list[Band]:
    """A scene's bands: ``band_rows`` pixel rows each, rounded to whole block rows (at least one), and where each
    starts running (the rows above it that it runs again)."""
    if band_rows < 1:
        raise ConfigError(f"split.band_rows={band_rows}: give the pixel rows of a band (at least 1; rounded to block rows).")
    grid = WindowGrid.for_scene(height, width, windows, stride)
    rows = block_rows_of(grid, block_windows(grid.stride))
    per = max(1, round(band_rows / (rows[0].bottom - rows[0].top)))
    return [Band(i, min(i + per, len(rows)), rows[i].top, rows[min(i + per, len(rows)) - 1].bottom,
                 rows[lead_start(rows, i)].top) for i in range(0, len(rows), per)]


def run_settings(cfg: DictConfig, predictor: Predictor) -> dict[str, Any]:
    """What changes every output file of the run: windows and batch, precision, device type, backend and format
    options (read once: the config is the same for every job)."""
    w = predictor.windows
    return {"window": {"size": w.size, "overlap": w.overlap, "margin": w.margin, "batch": predictor.batch(w.size, w.size)},
            "precision": getattr(predictor, "precision", "fp32"), "device": predictor.device.type,
            "backend": type(predictor).__name__, "compile": bool(cfg.compile), "cog": bool(cfg.cog),
            "vector": OmegaConf.to_container(cfg.vector) if cfg.vector.out is not None else None,
            "region": list(cfg.region) if cfg.region is not None else None,
            "bands": list(cfg.bands) if cfg.bands else None}


def settings_of(common: dict[str, Any], job: Job) -> dict[str, Any]:
    """What changes a job's output files: the run's settings, and the outputs it writes and their format."""
    return {**common, "outputs": [k for k in KEYS if getattr(job.outputs, k) is not None],
            "format": job.outputs.change.suffix.lower()}


def input_record(date: Path | RasterRef, pixels: int) -> dict[str, Any]:
    """A date as the manifest records it: its path and bytes, or its URL (redacted; its size is the server's)."""
    if isinstance(date, RasterRef):
        return {"path": str(date), "bytes": None, "pixels": pixels}
    return {"path": str(date.resolve()), "bytes": os.path.getsize(date), "pixels": pixels}


def manifest_key(change: Path, folder: Path) -> str:
    """The change map relative to the output folder (absolute when it lies elsewhere)."""
    try:
        return str(change.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(change.resolve())


def make_plan(cfg: DictConfig, predictor: Predictor, world: int) -> Plan:
    """List the jobs, check them against the manifest, cut large scenes into bands and deal the units.

    Also clears each split scene's stale parts (of bands to redo, of another band plan, a dead
    process's join lock): it runs while no process writes into the output folder.
    """
    jobs, folder = list_jobs(cfg), output_folder(cfg)
    model_sha256 = sha256_file(cfg.checkpoint)
    latest = Manifest(folder).latest() if cfg.resume else {}
    common, leftovers = run_settings(cfg, predictor), Temporaries()
    plan = Plan(folder, jobs, [], [])
    for index, job in enumerate(jobs):
        with job.reading(cfg):
            (h, w), (hb, wb) = scene_size(job.a), scene_size(job.b)
        inputs = {"a": input_record(job.a, h * w), "b": input_record(job.b, hb * wb)}
        if cfg.region is not None:  # the region's pixels are predicted, and cut into bands
            h, w = int(cfg.region[2]), int(cfg.region[3])
        key = manifest_key(job.outputs.change, folder)
        expected = Expected(inputs, model_sha256, settings_of(common, job))
        plan.keys.append(key)
        plan.expected.append(expected)
        why = expected.why_redo(latest.get(record_id(key, None)))
        if why is None:
            plan.skipped += 1
            continue
        redone = why != "new"
        if redone:
            plan.messages.append(f"redo {job.outputs.change}: {why}")
        leftovers.add(job.outputs)
        bands = (band_plan(h, w, predictor.windows, predictor.stride, cfg.split.band_rows)
                 if cfg.split.min_pixels is not None and h * w > cfg.split.min_pixels else [])
        if len(bands) < 2:
            plan.units.append(Unit(index, "scene", h * w))
            continue
        if cfg.vector.out is not None:
            raise ConfigError(f"vector.out with {job.a} ({h}x{w} px) split into bands (split.min_pixels="
                              f"{cfg.split.min_pixels}): set split.min_pixels=null, or run densechange vectorize on "
                              "the maps afterwards.")
        plan.bands[index], keep, todo = bands, [], 0
        for band in bands:
            parts = part_outputs(folder, key, job.outputs, band)
            why = expected.why_redo(latest.get(record_id(key, (band.top, band.bottom))))
            if why is None:
                keep += [getattr(parts, k) for k in KEYS if getattr(parts, k) is not None]
                continue
            if why != "new" and not redone:  # the scene's own message says it already
                plan.messages.append(f"redo {job.outputs.change} rows {band.top}-{band.bottom}: {why}")
            plan.units.append(Unit(index, "band", (band.bottom - band.lead) * w, band))  # the rows it runs
            todo += 1
        if not todo:
            plan.units.append(Unit(index, "join", 0))  # every band done, the join was not
        clear(folder, key, keep)
    leftovers.remove()
    plan.shares = deal([u.cost for u in plan.units], world)
    return plan


class Temporaries:
    """What a killed process left beside the outputs to make: temporaries never renamed (``.NAME.partial-*``).

    Each output folder is listed once, however many outputs it holds: a glob per output would read a
    folder of a million maps a million times. Only used while no process writes into the output
    folders (when a run plans).
    """

    def __init__(self) -> None:
        self.names: dict[Path, set[str]] = {}

    def add(self, outputs: SceneOutputs) -> None:
        for key in KEYS:
            path = getattr(outputs, key)
            if path is not None:
                self.names.setdefault(path.parent, set()).add(path.name)

    def remove(self) -> None:
        for folder, names in self.names.items():
            if not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    owner, marker, _ = entry.name[1:].partition(".partial-")
                    if entry.name.startswith(".") and marker and owner in names:
                        Path(entry.path).unlink(missing_ok=True)
