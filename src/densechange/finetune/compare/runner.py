"""Run the cells of a comparison: finetune, then score on the test split with and without pseudo-changes.

Each cell is a normal finetuning run folder (``densechange finetune`` with the cell's overrides and
``trainer.resume=auto``), so an interrupted cell continues where it stopped. When the cell is
scored, ``result.json`` is written last, atomically: a folder holding it is finished and a rerun
skips it. Under ``torchrun`` every process runs this same sequence, so each cell trains and scores
on all processes; only rank 0 writes. With ``run.tensorboard`` on, the grid folder is also one
TensorBoard view of every cell (:mod:`densechange.finetune.compare.board`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from densechange.atomic import write_atomically
from densechange.checkpoints import read_metadata
from densechange.engine.config import load_config
from densechange.engine.errors import ConfigError
from densechange.engine.runlog import JsonlLog

from densechange.finetune import evaluate, train
from densechange.finetune.config import CHOICES, EVAL_CHOICES, EvalDataConfig, EvaluateConfig, FinetuneConfig
from densechange.finetune.data import PAIRS_FILE, training_set
from densechange.finetune.compare.board import has_test_scores, write_grid_experiment, write_test_scores
from densechange.finetune.compare.grid import Cell, Grid
from densechange.finetune.compare.sync import Rendezvous
from densechange.finetune.inference.scoring import ROWS, ScoreSettings

RESULT_FILE = "result.json"
TEST_FILE = "test_metrics.json"
LOG_FILE = "compare.jsonl"
GRID_KEYS = ("model.encoder", "data.fraction", "data.fraction_seed", "run.seed", "run.dir", "trainer.resume")
SCORING_KEYS = ("checkpoint", "out")  # of each cell's test scoring, set by the comparison

Command = Callable[[Sequence[str]], int]
Scorer = Callable[[DictConfig], Any]  # densechange evaluate, on its resolved config


@dataclass
class Settings:
    """What every cell shares."""

    config: str | None  # finetuning YAML file
    common: list[str] = field(default_factory=list)  # key=value overrides of every cell
    steps: int | None = None  # same number of optimiser steps in every cell; None: the config's trainer.epochs
    eval_overrides: list[str] = field(default_factory=list)  # key=value overrides of the cells' test scoring (evaluate keys)
    tensorboard: bool = True  # the grid folder as one TensorBoard view: test scores per cell, the HParams table

    def check(self) -> None:
        """Keys that the grid sets per cell cannot be common overrides."""
        keys = {o.partition("=")[0].strip() for o in self.common}
        taken = sorted(keys & set(GRID_KEYS) | ({"trainer.epochs"} & keys if self.steps else set()))
        if taken:
            raise ConfigError(f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set for each cell by the comparison "
                              "(grid.encoders, grid.fractions, grid.seeds, grid.out, grid.steps); remove it from the "
                              "overrides.")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"grid.steps={self.steps}: give a positive number of optimiser steps per cell.")
        scoring = sorted({o.partition("=")[0].strip() for o in self.eval_overrides} & set(SCORING_KEYS))
        if scoring:
            raise ConfigError(f"grid.eval sets {', '.join(scoring)}, which the comparison sets for each cell (its "
                              f"checkpoint, its {TEST_FILE}); remove it from grid.eval.")


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def budget_epochs(cfg: Any, steps: int) -> int:
    """Epochs that give about ``steps`` optimiser steps on this cell's training pairs (at least one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    pairs = len(training_set(cfg.data, cfg.run.seed))
    per_epoch = (pairs // world) // cfg.trainer.batch_size // cfg.trainer.accumulate
    if per_epoch == 0:
        raise ConfigError(f"data.fraction={cfg.data.fraction} leaves {pairs} training pairs, too few for one step of "
                          f"{world} process(es) x batch {cfg.trainer.batch_size} x {cfg.trainer.accumulate} micro-batches; "
                          "lower trainer.batch_size or raise the smallest fraction.")
    return max(1, round(steps / per_epoch))


def training_argv(cell: Cell, settings: Settings, folder: Path) -> tuple[list[str], Any]:
    """The ``densechange finetune`` arguments of a cell, and its resolved config."""
    overrides = [*settings.common, *cell.overrides(), f"run.dir={folder}", "trainer.resume=auto"]
    cfg = load_config(FinetuneConfig, settings.config, overrides, choices=CHOICES, required=("data.root",))
    if settings.steps is not None:
        overrides.append(f"trainer.epochs={budget_epochs(cfg, settings.steps)}")
        cfg = load_config(FinetuneConfig, settings.config, overrides, choices=CHOICES, required=("data.root",))
    return ([*(["--config", settings.config] if settings.config else []), *overrides]), cfg


def evaluation_config(cfg: DictConfig, checkpoint: Path, out: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The ``densechange evaluate`` config that scores a cell's ``checkpoint`` on its test split into ``out``.

    From the cell's resolved config: its own data (root, layout, ignore value, every key the two
    data sections share) on the test split, scored as its validation scores (every ``val`` key of
    the scoring settings: windows, nuisances and their seed, workers) with every nuisance row, on
    its device and at its precision; then ``overrides`` (``evaluate`` keys).
    """
    data = {f.name: cfg.data[f.name] for f in dataclasses.fields(EvalDataConfig) if f.name in cfg.data}
    data.update(split="test", synthetic_pairs=cfg.data.synthetic_val_pairs)
    scoring = {f.name: cfg.val[f.name] for f in dataclasses.fields(ScoreSettings)}
    cell = {**scoring, "pseudo_change": "each", "data": data, "device": cfg.trainer.device,
            "precision": cfg.trainer.precision, "checkpoint": str(checkpoint), "out": str(out)}
    return load_config(EvaluateConfig, None, overrides, choices=EVAL_CHOICES, required=("checkpoint", "data.root"),
                       values=OmegaConf.to_container(OmegaConf.create(cell), resolve=True))


def read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, record: dict[str, Any]) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))


def _pairs_used(folder: Path) -> int:
    lines = (folder / PAIRS_FILE).read_text().splitlines()
    return sum(1 for line in lines if line.strip() and not line.startswith("#"))


def _identity(cell: Cell, settings: Settings, argv: list[str]) -> dict[str, Any]:
    """What makes a finished run this cell: its encoder, variant, fraction, seed and command (any run folder)."""
    return {"encoder": cell.encoder.label, "encoder_source": cell.encoder.source, "variant": cell.variant.name,
            "fraction": cell.fraction, "seed": cell.seed, "args": [a for a in argv if not a.startswith("run.dir=")],
            "eval_overrides": list(settings.eval_overrides)}


def finished_result(cell: Cell, settings: Settings, out: Path) -> dict[str, Any] | None:
    """The cell's ``result.json`` when it is finished; a finished run of other settings is an error."""
    folder = cell.folder(out)
    done = read_result(folder)
    if done is None:
        return None
    identity = _identity(cell, settings, training_argv(cell, settings, folder)[0])
    if any(done.get(k) != v for k, v in identity.items()):
        raise ConfigError(f"{folder} holds a finished run made with other settings ({RESULT_FILE} records its "
                          "command); use another grid.out, or delete that folder to redo the cell.")
    return done


def run_cell(cell: Cell, settings: Settings, out: Path, *, finetune: Command = train.main,
             score: Scorer = evaluate.evaluate_checkpoint, rendezvous: Rendezvous | None = None
             ) -> tuple[dict[str, Any], bool]:
    """Train and score one cell unless it is finished; returns its result and whether it ran.

    Under ``torchrun`` every process calls this for every cell; ``rendezvous`` gives each command
    its own process group and keeps the processes in step (see :mod:`.sync`).
    """
    rendezvous = rendezvous or Rendezvous()
    tag = f"{cell.encoder.label}/{cell.variant.name}/{cell.fraction:g}/{cell.seed}"
    rendezvous.wait(f"{tag}/start")  # every process sees the same files before deciding what to run
    done = finished_result(cell, settings, out)
    if done is not None:
        return done, False
    folder = cell.folder(out)
    argv, cfg = training_argv(cell, settings, folder)
    start = time.perf_counter()
    if not (folder / train.FINAL_FILE).is_file():  # a run killed before its end resumes from last.safetensors
        with rendezvous.command(f"{tag}/train"):
            finetune(argv)
    checkpoint = folder / (train.BEST_FILE if (folder / train.BEST_FILE).is_file() else train.FINAL_FILE)
    with rendezvous.command(f"{tag}/score"):
        score(evaluation_config(cfg, checkpoint, folder / TEST_FILE, settings.eval_overrides))
    test = json.loads((folder / TEST_FILE).read_text())
    result = {**_identity(cell, settings, argv), "train_pairs": _pairs_used(folder), "epochs": cfg.trainer.epochs,
              "steps": read_metadata(folder / train.FINAL_FILE).get("steps"), "checkpoint": checkpoint.name,
              "trained_epoch": test.get("trained_epoch"), "test_pairs": test["pairs"],
              "test": {k: test[k] for k in ROWS if k in test},
              "train_seconds": round(time.perf_counter() - start, 1), "run_dir": str(folder.relative_to(out))}
    if is_main_process():
        _write_json(folder / RESULT_FILE, result)
    return result, True


def finished_results(grid: Grid, settings: Settings, out: Path) -> list[dict[str, Any]]:
    """The results of the cells of ``grid`` that are finished, running nothing (``grid.report_only``)."""
    settings.check()
    results = [r for r in (finished_result(cell, settings, out) for cell in grid.cells()) if r is not None]
    if not results:
        raise ConfigError(f"{out} holds no finished cell of this grid yet; run the command without grid.report_only=true.")
    return results


def run_grid(grid: Grid, settings: Settings, out: Path, **commands: Any) -> list[dict[str, Any]]:
    """Every cell of ``grid`` in order (finished ones skipped); a line per cell and ``compare.jsonl`` in ``out``."""
    settings.check()
    cells = grid.cells()
    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if settings.tensorboard:
            write_grid_experiment(out, grid, settings.config, settings.common)
    log = JsonlLog(out / LOG_FILE if main else None)
    rendezvous = Rendezvous()
    results = []
    try:
        for i, cell in enumerate(cells, 1):
            name = f"{cell.encoder.label}/{cell.variant.name} fraction={cell.fraction:g} seed={cell.seed}"
            if main:
                print(f"[compare {i}/{len(cells)}] {name}", flush=True)
            start = time.perf_counter()
            result, ran = run_cell(cell, settings, out, rendezvous=rendezvous, **commands)
            results.append(result)
            if main and settings.tensorboard and (ran or not has_test_scores(cell.folder(out))):
                write_test_scores(cell.folder(out), result)
            f1 = result["test"]["clean"]["change_f1"]
            if main:
                print(f"[compare {i}/{len(cells)}] {name}: {'done' if ran else 'finished before, skipped'}, test F1={f1:.4f}",
                      flush=True)
            log.write({"cell": i, "of": len(cells), "encoder": cell.encoder.label, "variant": cell.variant.name,
                       "fraction": cell.fraction, "seed": cell.seed, "status": "done" if ran else "skipped",
                       "seconds": round(time.perf_counter() - start, 1), "f1": f1, "time": time.time()})
    finally:
        log.close()
    return results
