"""Does it help on my data? A grid of finetuning runs, compared under one budget.

``densechange compare`` (see :mod:`densechange.finetune.compare.cli`) runs every combination of
encoders, variants, label fractions and seeds as a normal finetuning run folder, scores each on
the test split with and without pseudo-changes, and writes ``results.csv``, ``results.md`` (mean ±
std over seeds, and paired differences against a baseline cell) and ``f1_vs_fraction.png``.

Modules: :mod:`.grid` (axes and cells), :mod:`.runner` (train and score a cell, skip finished
ones), :mod:`.stats` (summaries and paired differences), :mod:`.tables` (CSV and markdown),
:mod:`.plot` (the figure).
"""
from densechange.finetune.compare.grid import BUILTIN_VARIANTS, Cell, EncoderChoice, Grid, Variant
from densechange.finetune.compare.stats import Baseline, PairedDiff, paired_differences, sign_test, summarise

__all__ = ["BUILTIN_VARIANTS", "Baseline", "Cell", "EncoderChoice", "Grid", "PairedDiff", "Variant", "paired_differences",
           "sign_test", "summarise"]
