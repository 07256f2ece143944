"""``densechange compare``: a grid of finetuning runs under one budget, tabulated.

    densechange compare --config configs/finetune/demo.yaml grid.out=runs/compare \\
        grid.encoders=[random,sadl=runs/sadl/encoder.safetensors] grid.variants=[deepcl,no_metric,gamma0] \\
        grid.fractions=[0.2,1] grid.seeds=[0,1,2] grid.steps=200 grid.baselines=[random/deepcl] data.root=synthetic
    torchrun --nproc_per_node=4 -m densechange.finetune.compare ...       # every cell runs on all processes

Every finetuning key is a key of the command too: with the ``--config`` file, those given on the
command line make the base config of every cell. Writes into ``grid.out``: one run folder per cell
(``ENCODER/VARIANT/fF/sS/``, each with its ``result.json`` once scored), ``compare.jsonl`` (one
record per cell), ``results.csv`` (one row per run), ``results.md`` (mean ± std over seeds, paired
differences against each of ``grid.baselines``) and ``f1_vs_fraction.png``. Rerunning the command
skips the finished cells and rewrites the tables. ``tensorboard --logdir grid.out`` overlays the
cells' curves, one run per cell, with each cell's test scores and a HParams table of the grid
(``run.tensorboard=false``: none of it).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from densechange.atomic import write_atomically
from densechange.engine.cli import CommandSpec, parse_command, read_command_line, run_cli
from densechange.engine.errors import ConfigError

from densechange.finetune.compare.config import CompareConfig
from densechange.finetune.config import CHOICES
from densechange.finetune.compare.grid import Grid, parse_encoders, parse_fractions, parse_seeds, parse_variants
from densechange.finetune.compare.plot import plot_f1_vs_fraction
from densechange.finetune.compare.runner import Settings, finished_results, is_main_process, run_grid
from densechange.finetune.compare.stats import Baseline
from densechange.finetune.compare.tables import render_markdown, row_from_result, write_csv

CSV_FILE, MARKDOWN_FILE, PLOT_FILE = "results.csv", "results.md", "f1_vs_fraction.png"
BASE_FILE = "base_config.yaml"


SPEC = CommandSpec(
    "densechange compare",
    "Compare encoders and variants over label fractions and seeds: a grid of finetuning runs under one budget, each "
    "scored on the test split with and without pseudo-changes. Every finetuning key sets the base config of the cells.",
    CompareConfig,
    required=("data.root", "grid.out"),
    choices=CHOICES,
    examples=("densechange compare --config configs/finetune/demo.yaml grid.out=runs/grid "
              "grid.encoders=[random,sadl=runs/sadl/encoder.safetensors] grid.variants=[deepcl,no_metric] "
              "grid.fractions=[0.5,1] grid.seeds=[0,1] grid.steps=36 data.root=runs/pairs",),
)


def _check_baselines(baselines: list[Baseline], grid: Grid) -> None:
    encoders, variants = {e.label for e in grid.encoders}, {v.name for v in grid.variants}
    for b in baselines:
        if b.encoder not in encoders or b.variant not in variants or (b.fraction is not None and b.fraction not in grid.fractions):
            raise ConfigError(f"grid.baselines entry {b} is not a cell of the grid (encoders {', '.join(sorted(encoders))}; "
                              f"variants {', '.join(sorted(variants))}; fractions {', '.join(f'{f:g}' for f in grid.fractions)}).")


def cell_config(config: str | None, out: Path) -> str | None:
    """The YAML file every cell is trained from: ``config``, or its finetuning keys alone when it has a grid section.

    A cell is a plain ``densechange finetune`` run, which knows no ``grid`` keys; the copy lies in
    ``out`` and is the same on every rerun (and on every process), so finished cells are recognised.
    """
    if config is None:
        return None
    loaded = OmegaConf.load(config)  # parse_command has read it already: it exists and parses
    if "grid" not in loaded:
        return config
    base = OmegaConf.masked_copy(loaded, [k for k in loaded if k != "grid"])
    write_atomically(out / BASE_FILE, lambda tmp: tmp.write_text(OmegaConf.to_yaml(base)))
    return str(out / BASE_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    g = cfg.grid
    grid = Grid(parse_encoders(g.encoders), parse_variants(g.variants, g.variant_keys), parse_fractions(g.fractions),
                parse_seeds(g.seeds))
    baselines = [Baseline.parse(b) for b in g.baselines] or [Baseline(grid.encoders[0].label, grid.variants[0].name)]
    _check_baselines(baselines, grid)
    line = read_command_line(SPEC, argv)  # each cell is trained from the file and the finetuning keys as given
    common = [o for o in line.overrides if not o.startswith("grid.")]
    out = Path(g.out)
    settings = Settings(cell_config(line.config, out), common, g.steps, list(g.eval), tensorboard=cfg.run.tensorboard)
    results = finished_results(grid, settings, out) if g.report_only else run_grid(grid, settings, out)
    if not is_main_process():
        return 0
    rows = [row_from_result(r) for r in results]
    write_csv(rows, out / CSV_FILE)
    budget = f"about {g.steps} optimiser steps (whole epochs) per run" if g.steps else "the config's trainer.epochs per run"
    first = results[0]
    missing = len(grid.cells()) - len(rows)
    context = [f"Made by `densechange compare {shlex.join(argv)}`.", "",
               *([f"**{missing} of the {len(grid.cells())} cells are not finished; they are left out.**", ""] if missing else []),
               f"{len(rows)} runs, {budget}; scored on the test split ({first['test_pairs']} pair"
               f"{'s' if first['test_pairs'] != 1 else ''}) with and without "
               "pseudo-changes on the second date (all nuisances together, and each alone). Change-class metrics; FPR is "
               "the false-positive rate on unchanged pixels, AUROC that of the change probability (threshold-free); the "
               "flip rate and induced false alarms measure what the nuisance alone changed in the decisions."]
    (out / MARKDOWN_FILE).write_text(render_markdown(rows, baselines, context))
    if g.plot:
        plot_f1_vs_fraction(rows, out / PLOT_FILE)
    print(f"{len(rows)} runs tabulated: {out / CSV_FILE}, {out / MARKDOWN_FILE}" + (f", {out / PLOT_FILE}" if g.plot else ""))
    return 0


def cli() -> None:
    run_cli(main)
