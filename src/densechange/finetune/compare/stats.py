"""Statistics of a comparison: mean and spread over seeds, and paired differences against a baseline.

Seeds pair the runs: cell and baseline trained with one seed share the labelled subset, the data
order and the initialisation of everything the encoder does not provide. A paired difference is
therefore taken seed by seed, and its summary says how many seeds agree in sign. With a handful of
seeds nothing stronger can be claimed: an exact two-sided sign test over ``n`` seeds that all agree
gives ``p = 2 / 2**n`` (0.25 for 3 seeds, 0.0625 for 5), so only six or more seeds of one sign reach 0.05.

Example:
    >>> rows = [{"encoder": "sadl", "variant": "deepcl", "fraction": 1.0, "seed": s, "f1": v} for s, v in ...]
    >>> [d.summary() for d in paired_differences(rows, Baseline.parse("random/deepcl"), "f1")]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Any, Iterable, Sequence

from densechange.engine.errors import ConfigError

Row = dict[str, Any]
Group = tuple[str, str, float]


def group_of(row: Row) -> Group:
    """``(encoder, variant, fraction)``: the runs that differ only by seed."""
    return str(row["encoder"]), str(row["variant"]), float(row["fraction"])


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation over seeds; nan for one seed
    n: int


def summarise(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (``ddof=1``) of one metric over seeds."""
    if not values:
        raise ValueError("no values to summarise")
    if any(math.isnan(v) for v in values):  # a metric a run did not report (an older result.json)
        return Summary(math.nan, math.nan, len(values))
    return Summary(mean(values), stdev(values) if len(values) > 1 else math.nan, len(values))


def sign_test(higher: int, lower: int) -> float:
    """Exact two-sided sign test (ties left out): the chance of a split at least this uneven under no effect."""
    n = higher + lower
    if n == 0:
        return 1.0
    k = min(higher, lower)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@dataclass(frozen=True)
class Baseline:
    """The cell the others are compared with: ``ENCODER/VARIANT`` at the same fraction, or ``@FRACTION`` fixed."""

    encoder: str
    variant: str
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Baseline":
        cell, _, frac = text.partition("@")
        encoder, sep, variant = cell.partition("/")
        if not sep or not encoder or not variant:
            raise ConfigError(f"grid.baselines entry '{text}' is not ENCODER/VARIANT[@FRACTION] (e.g. random/deepcl or "
                              "random/deepcl@1.0).")
        try:
            fraction = float(frac) if frac else None
        except ValueError:
            raise ConfigError(f"grid.baselines entry '{text}': the fraction after '@' must be a number.") from None
        return cls(encoder, variant, fraction)

    def __str__(self) -> str:
        return f"{self.encoder}/{self.variant}" + (f"@{self.fraction:g}" if self.fraction is not None else "")

    def group(self, fraction: float) -> Group:
        return self.encoder, self.variant, self.fraction if self.fraction is not None else fraction


@dataclass(frozen=True)
class PairedDiff:
    """Seed-by-seed differences ``cell - baseline`` of one metric."""

    group: Group
    baseline: Group
    metric: str
    seeds: tuple[int, ...]
    diffs: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean(self.diffs)

    @property
    def std(self) -> float:
        return stdev(self.diffs) if len(self.diffs) > 1 else math.nan

    @property
    def higher(self) -> int:
        return sum(d > 0 for d in self.diffs)

    @property
    def lower(self) -> int:
        return sum(d < 0 for d in self.diffs)

    @property
    def sign_p(self) -> float:
        return sign_test(self.higher, self.lower)

    def signs(self) -> str:
        """``higher on 3 of 3 seeds``, ``higher on 2, lower on 1 of 3 seeds`` (ties named too)."""
        n, tied = len(self.diffs), len(self.diffs) - self.higher - self.lower
        parts = [f"{word} on {k}" for word, k in (("higher", self.higher), ("lower", self.lower), ("tied", tied)) if k]
        return f"{', '.join(parts)} of {n} seed{'s' if n > 1 else ''}"

    def support(self) -> str:
        """What the seeds support, and no more."""
        n = len(self.diffs)
        if n < 2:
            return "one seed: no evidence either way"
        if self.higher == n or self.lower == n:
            if self.sign_p <= 0.05:
                return f"same sign on all {n} seeds (sign test p={self.sign_p:.3g})"
            return f"same sign on all {n} seeds, too few for a sign test to exclude chance (p={self.sign_p:.3g})"
        return "mixed signs: no consistent difference"


def index_rows(rows: Iterable[Row], metric: str) -> dict[Group, dict[int, float]]:
    """``group -> {seed: value}`` of one metric."""
    out: dict[Group, dict[int, float]] = {}
    for row in rows:
        seeds = out.setdefault(group_of(row), {})
        seed = int(row["seed"])
        if seed in seeds:
            raise ValueError(f"two rows for {group_of(row)} seed {seed}")
        seeds[seed] = float(row[metric])
    return out


def paired_differences(rows: Sequence[Row], baseline: Baseline, metric: str) -> list[PairedDiff]:
    """Every other group against ``baseline``, over the seeds both have, in the rows' order of groups."""
    table = index_rows(rows, metric)
    if not any(g[:2] == (baseline.encoder, baseline.variant) for g in table):
        cells = sorted({f"{g[0]}/{g[1]}" for g in table})
        raise ConfigError(f"baseline {baseline} is not a cell of this comparison; cells: {', '.join(cells)}.")
    out = []
    for group, values in table.items():
        base_group = baseline.group(group[2])
        base = table.get(base_group)
        if group == base_group or base is None:
            continue
        seeds = tuple(s for s in values if s in base)
        if seeds:
            out.append(PairedDiff(group, base_group, metric, seeds, tuple(values[s] - base[s] for s in seeds)))
    return out
