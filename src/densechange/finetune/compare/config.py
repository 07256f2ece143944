"""The keys of ``densechange compare``: every finetuning key (the base config of each cell) and a ``grid`` section."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from densechange.finetune.config import FinetuneConfig


@dataclass
class GridConfig:
    """The axes of the comparison, its budget and where it goes."""

    out: Optional[str] = None  # folder of the comparison: one run folder per cell, the tables and the plot
    encoders: list[str] = field(default_factory=lambda: ["random"])  # NAME (random, imagenet, registry name, path, URL) or LABEL=SOURCE
    variants: list[str] = field(default_factory=lambda: ["deepcl"])  # deepcl, no_metric, siam_diff, gamma0, or names of variant_keys
    variant_keys: list[str] = field(default_factory=list)  # NAME:KEY=VALUE defining a variant by its overrides (repeat NAME to add)
    fractions: list[float] = field(default_factory=lambda: [1.0])  # label fractions in (0, 1]
    seeds: list[int] = field(default_factory=lambda: [0])  # seeds of every cell (initialisation, data order, labelled subset)
    steps: Optional[int] = None  # optimiser steps of every cell (epochs set per fraction); null: trainer.epochs
    baselines: list[str] = field(default_factory=list)  # ENCODER/VARIANT[@FRACTION] to pair against; empty: the first cell's
    eval: list[str] = field(default_factory=list)  # KEY=VALUE overrides of the test scoring (densechange evaluate keys)
    plot: bool = True  # write f1_vs_fraction.png
    report_only: bool = False  # tabulate the finished cells, run nothing (e.g. while the grid runs elsewhere)


@dataclass
class CompareConfig(FinetuneConfig):
    grid: GridConfig = field(default_factory=GridConfig)
