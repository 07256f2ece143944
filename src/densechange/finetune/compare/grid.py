"""The axes of a comparison and the cells they span: encoders x variants x label fractions x seeds.

An *encoder* is any source ``model.encoder`` accepts (``random``, ``imagenet``, a registry name, a
checkpoint path, a URL), under a short label that names it in folders and tables
(``sadl=runs/sadl/encoder.safetensors``). A *variant* is a named set of config overrides; four are
built in, more are defined by the ``grid.variant_keys`` key (``[lowlr:trainer.optim.lr=1e-4]``).

Example:
    >>> grid = Grid(parse_encoders(["random", "sadl=runs/sadl/encoder.safetensors"]),
    ...             parse_variants(["deepcl", "no_metric"], []), (0.2, 1.0), (0, 1, 2))
    >>> len(grid.cells())
    24
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from densechange.engine.errors import ConfigError

from densechange.finetune.data import check_fraction

BUILTIN_VARIANTS: dict[str, tuple[str, ...]] = {
    "deepcl": (),  # the detector as configured: DeepCL metric branch, HSCL with the config's gamma
    "no_metric": ("model.metric_branch=false",),  # the same detector without DeepCL
    "siam_diff": ("model.name=siam_diff",),  # the plain siamese difference decoder (with the metric branch)
    "gamma0": ("model.hscl_gamma=0",),  # STANet's batch-balanced contrastive loss instead of hardness weighting
}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEYWORDS = ("random", "imagenet", "none")


@dataclass(frozen=True)
class EncoderChoice:
    """One encoder axis value: a source for ``model.encoder`` and its label (not a network: see ``checkpoints.Encoder``)."""

    label: str  # names the encoder in folders and tables
    source: str  # what model.encoder receives


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """One finetuning run of the grid."""

    encoder: EncoderChoice
    variant: Variant
    fraction: float
    seed: int

    @property
    def group(self) -> tuple[str, str, float]:
        """What the seeds of a cell are averaged over: ``(encoder, variant, fraction)``."""
        return self.encoder.label, self.variant.name, self.fraction

    def folder(self, out: Path) -> Path:
        """The cell's run folder under ``out``."""
        return out / self.encoder.label / self.variant.name / f"f{self.fraction:g}" / f"s{self.seed}"

    def overrides(self) -> list[str]:
        """Config overrides that make a run this cell (after the comparison's common overrides).

        The training subset is drawn with the cell's seed (``data.fraction_seed``), so seeds vary
        the labelled pairs as well as the initialisation and data order, while two cells of one
        seed see the same pairs.
        """
        return [f"model.encoder={self.encoder.source}", *self.variant.overrides, f"data.fraction={self.fraction}",
                f"data.fraction_seed={self.seed}", f"run.seed={self.seed}"]


@dataclass(frozen=True)
class Grid:
    encoders: tuple[EncoderChoice, ...]
    variants: tuple[Variant, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]

    def cells(self) -> list[Cell]:
        """Every cell, seed by seed: an interrupted grid has whole seeds done first."""
        return [Cell(e, v, f, s) for s in self.seeds for f in self.fractions for e in self.encoders for v in self.variants]


def _check_label(label: str, what: str) -> str:
    if not _LABEL.match(label):
        raise ConfigError(f"{what} label '{label}' may hold letters, digits, '.', '_' and '-' only (it names a folder); "
                          f"write LABEL=SOURCE to choose one.")
    return label


def encoder_label(source: str) -> str:
    """A short label for an encoder source: the keyword or name itself, or the folder of an ``encoder.*`` file."""
    if _LABEL.match(source) and "." not in source:
        return source
    path = Path(source.split("?")[0].rstrip("/"))
    return path.parent.name if path.stem == "encoder" and path.parent.name else path.stem


def parse_encoders(items: Sequence[str]) -> tuple[EncoderChoice, ...]:
    """``[random, imagenet, sadl=runs/sadl/encoder.safetensors]`` -> encoders with unique labels."""
    encoders = []
    for item in (str(i).strip() for i in items):
        label, _, source = item.partition("=")
        if not source or "/" in label or ":" in label:
            label, source = encoder_label(item), item
        encoders.append(EncoderChoice(_check_label(label, "encoder"), source))
    return _unique(encoders, "encoder", lambda e: e.label)


def parse_variants(names: Sequence[str], definitions: Sequence[str]) -> tuple[Variant, ...]:
    """Built-in variant names, then variants defined as ``NAME:KEY=VALUE`` (repeat NAME to add overrides)."""
    custom: dict[str, list[str]] = {}
    for item in definitions:
        name, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise ConfigError(f"grid.variant_keys entry '{item}' is not NAME:KEY=VALUE (e.g. lowlr:trainer.optim.lr=1e-4).")
        if name in BUILTIN_VARIANTS:
            raise ConfigError(f"grid.variant_keys entry '{item}': '{name}' is a built-in variant ({', '.join(BUILTIN_VARIANTS)}); "
                              "give yours another name.")
        custom.setdefault(_check_label(name, "variant"), []).append(override)
    listed = [str(n).strip() for n in names]
    for name in listed:
        if name not in BUILTIN_VARIANTS and name not in custom:
            raise ConfigError(f"unknown variant '{name}' in grid.variants; built in: {', '.join(BUILTIN_VARIANTS)}; "
                              "define others in grid.variant_keys as NAME:KEY=VALUE.")
    order = listed + [name for name in custom if name not in listed]  # defined variants run even when not listed
    return _unique([Variant(n, BUILTIN_VARIANTS[n] if n in BUILTIN_VARIANTS else tuple(custom[n])) for n in order],
                   "variant", lambda v: v.name)


def parse_fractions(values: Sequence[float]) -> tuple[float, ...]:
    """Label fractions in (0, 1], each once."""
    return _unique([check_fraction(float(v)) for v in values], "fraction", lambda v: v)


def parse_seeds(values: Sequence[int]) -> tuple[int, ...]:
    """Seeds, each once."""
    return _unique([int(v) for v in values], "seed", lambda v: v)


def _unique(items: list, what: str, key: Callable[[Any], Hashable]) -> tuple:
    if not items:
        raise ConfigError(f"no {what} given.")
    dupes = sorted(str(k) for k, n in Counter(key(i) for i in items).items() if n > 1)
    if dupes:
        raise ConfigError(f"{what} {', '.join(dupes)} given twice; every {what} must be distinct.")
    return tuple(items)
