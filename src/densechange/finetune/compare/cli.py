"""``densechange compare``: a grid of finetuning runs under one budget, tabulated.

    densechange compare --config configs/finetune/demo.yaml --out runs/compare \\
        --encoders random,sadl=runs/sadl/encoder.safetensors --variants deepcl,no_metric,gamma0 \\
        --fractions 0.2,1 --seeds 0,1,2 --steps 200 --baseline random/deepcl data.root=synthetic
    torchrun --nproc_per_node=4 -m densechange.finetune.compare ...       # every cell runs on all processes

Writes into ``--out``: one run folder per cell (``ENCODER/VARIANT/fF/sS/``, each with its
``result.json`` once scored), ``compare.jsonl`` (one record per cell), ``results.csv`` (one row per
run), ``results.md`` (mean ± std over seeds, paired differences against each ``--baseline``) and
``f1_vs_fraction.png``. Rerunning the command skips the finished cells and rewrites the tables.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from densechange.engine.cli import parse_args, run_cli
from densechange.engine.errors import ConfigError

from densechange.finetune.compare.grid import Grid, parse_encoders, parse_fractions, parse_seeds, parse_variants
from densechange.finetune.compare.plot import plot_f1_vs_fraction
from densechange.finetune.compare.runner import Settings, finished_results, is_main_process, run_grid
from densechange.finetune.compare.stats import Baseline
from densechange.finetune.compare.tables import render_markdown, row_from_result, write_csv

CSV_FILE, MARKDOWN_FILE, PLOT_FILE = "results.csv", "results.md", "f1_vs_fraction.png"


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder of the comparison (one run folder per cell, the tables)")
    parser.add_argument("--encoders", default="random",
                        help="comma-separated encoders: random, imagenet, registry names, paths or URLs, each optionally "
                             "LABEL=SOURCE (default: random)")
    parser.add_argument("--variants", default="deepcl",
                        help="comma-separated variants: deepcl, no_metric, siam_diff, gamma0, or names given by --variant")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="define a variant by its overrides; repeat a NAME to add overrides")
    parser.add_argument("--fractions", default="1", help="comma-separated label fractions in (0, 1] (default: 1)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps of every cell (epochs are set per fraction); default: trainer.epochs")
    parser.add_argument("--baseline", action="append", default=[], metavar="ENCODER/VARIANT[@FRACTION]",
                        help="paired comparison against this cell (repeatable; default: first encoder/first variant)")
    parser.add_argument("--eval", action="append", default=[], metavar="KEY=VALUE",
                        help="override of the test scoring (densechange evaluate keys), e.g. data.synthetic_pairs=64")
    parser.add_argument("--no-plot", action="store_true", help="skip f1_vs_fraction.png")
    parser.add_argument("--report-only", action="store_true",
                        help="tabulate the cells that are finished, run nothing (e.g. while the grid runs elsewhere)")


def _check_baselines(baselines: list[Baseline], grid: Grid) -> None:
    encoders, variants = {e.label for e in grid.encoders}, {v.name for v in grid.variants}
    for b in baselines:
        if b.encoder not in encoders or b.variant not in variants or (b.fraction is not None and b.fraction not in grid.fractions):
            raise ConfigError(f"--baseline {b} is not a cell of the grid (encoders {', '.join(sorted(encoders))}; "
                              f"variants {', '.join(sorted(variants))}; fractions {', '.join(f'{f:g}' for f in grid.fractions)}).")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args("densechange compare", "Compare encoders and variants over label fractions and seeds.",
                      argv, extra=_flags)
    grid = Grid(parse_encoders(args.encoders), parse_variants(args.variants, args.variant),
                parse_fractions(args.fractions), parse_seeds(args.seeds))
    baselines = [Baseline.parse(b) for b in args.baseline] or [Baseline(grid.encoders[0].label, grid.variants[0].name)]
    _check_baselines(baselines, grid)
    settings = Settings(args.config, list(args.overrides), args.steps, list(args.eval))
    out = Path(args.out)
    results = finished_results(grid, settings, out) if args.report_only else run_grid(grid, settings, out)
    if not is_main_process():
        return 0
    rows = [row_from_result(r) for r in results]
    write_csv(rows, out / CSV_FILE)
    budget = f"about {args.steps} optimiser steps (whole epochs) per run" if args.steps else "the config's trainer.epochs per run"
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
    if not args.no_plot:
        plot_f1_vs_fraction(rows, out / PLOT_FILE)
    print(f"{len(rows)} runs tabulated: {out / CSV_FILE}, {out / MARKDOWN_FILE}"
          + ("" if args.no_plot else f", {out / PLOT_FILE}"))
    return 0


def cli() -> None:
    run_cli(main)
