"""The comparison in TensorBoard: the cells' curves overlaid, their test scores, one HParams table.

``tensorboard --logdir GRID_OUT`` shows every cell's run folder (``ENCODER/VARIANT/fF/sS``, whose
finetuning run wrote its curves there) as one run, so the cells' curves overlay in one view. Each
scored cell also gets the sub-run ``test`` holding its test scores at the cell's last step, named
as the columns of ``results.csv`` (``test/f1``, ``test/pc_fpr``, ``test/pc_shift_flips``, ...). The
grid folder holds the experiment of the HParams tab: the keys that the grid sets per cell as
columns and the main test scores as metrics, so the table has one row per cell.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from densechange.engine.board import RunBoard, flat_hparams
from densechange.engine.config import load_config, to_dict

from densechange.finetune.config import CHOICES, FinetuneConfig
from densechange.finetune.compare.grid import Grid
from densechange.finetune.compare.tables import METRIC_FIELDS, TABLE_METRICS, row_from_result

__all__ = ["TEST_RUN", "write_test_scores", "write_grid_experiment"]

TEST_RUN = "test"  # sub-run of a cell's folder with its test scores
EVENTS = "events.out.tfevents.*"


def write_test_scores(folder: Path, result: dict[str, Any]) -> None:
    """The cell's test scores (its ``result.json``) as the run ``folder/test``, replacing one a rescoring left."""
    run = folder / TEST_RUN
    if run.exists():
        shutil.rmtree(run)
    board = RunBoard(run)
    row = row_from_result(result)
    board.scalars("test", {k: row[k] for k in METRIC_FIELDS}, step=int(result.get("steps") or 0))
    board.close()


def has_test_scores(folder: Path) -> bool:
    return any((folder / TEST_RUN).glob(EVENTS))


def write_grid_experiment(out: Path, grid: Grid, config: str | None, common: list[str]) -> None:
    """The HParams table of the grid, in ``out`` itself (the one a previous command wrote is replaced).

    Its columns are the keys each cell sets (``model.encoder``, ``data.fraction``, ``run.seed``,
    the variants' keys), typed as the cells' resolved configs hold them, so that TensorBoard
    matches them with the hyper-parameters each cell's run wrote.
    """
    keys: dict[str, None] = {}
    for cell in grid.cells():
        keys.update(dict.fromkeys(item.partition("=")[0].strip() for item in cell.overrides()))
    values: dict[str, Any] = {}
    for cell in grid.cells():  # a key that only some variants set has its value in those cells' configs
        cfg = flat_hparams(to_dict(load_config(FinetuneConfig, config, [*common, *cell.overrides()], choices=CHOICES,
                                               required=("data.root",))))
        values.update({k: cfg[k] for k in keys if k in cfg and k not in values})
        if len(values) == len(keys):
            break
    for old in out.glob(EVENTS):
        old.unlink()
    board = RunBoard(out)
    metrics = [("train/loss", ""), ("val/change_f1", ""), *((f"test/{k}", TEST_RUN) for k in TABLE_METRICS)]
    board.experiment({k: values[k] for k in keys if k in values}, metrics)
    board.close()
