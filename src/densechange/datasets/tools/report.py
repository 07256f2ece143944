"""What ``densechange check`` found: each problem with its file, and what the dataset holds.

A :class:`Report` is filled by :func:`densechange.datasets.tools.check.check_dataset` and printed by
the command; its ``fatal`` says whether training would stop on the dataset.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from densechange.datasets.io.images import IGNORE_INDEX

__all__ = ["Problem", "Report"]


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is ``error`` (training would fail) or ``warning``; ``kind`` groups the summary."""

    severity: str
    path: str
    message: str
    kind: str = "other"

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.path}: {self.message}"


@dataclass
class Report:
    """Problems found in a dataset and what it holds (sizes, bands, dtypes, pixels per class)."""

    root: Path
    kind: str
    problems: list[Problem] = field(default_factory=list)
    samples: int = 0
    sizes: Counter = field(default_factory=Counter)
    bands: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    class_pixels: Counter = field(default_factory=Counter)
    layout: str = ""  # the layout recognised, with its folders and where its splits are
    band_of: dict[str, int] = field(default_factory=dict, repr=False)
    auto_modes: dict[str, list[Path]] = field(default_factory=dict, repr=False)  # mask files per resolved auto rule

    @property
    def fatal(self) -> bool:
        """True when at least one problem would stop training."""
        return any(p.severity == "error" for p in self.problems)

    def add(self, severity: str, path: Path | str, message: str, kind: str) -> None:
        self.problems.append(Problem(severity, str(path), message, kind))

    def counts(self) -> Counter:
        """Number of problems per kind."""
        return Counter(p.kind for p in self.problems)

    def format(self) -> str:
        """Human-readable report: every problem, then a summary."""
        lines = [f"dataset {self.root} ({self.kind}, {self.samples} samples read)"]
        if self.layout:
            lines.append(f"layout: {self.layout}")
        lines += [str(p) for p in self.problems]
        errors = sum(p.severity == "error" for p in self.problems)
        per_kind = ", ".join(f"{k}: {n}" for k, n in sorted(self.counts().items()))
        summary = f"problems: {errors} errors, {len(self.problems) - errors} warnings"
        lines.append(summary + (f" ({per_kind})" if per_kind else ""))
        if self.sizes:
            lines.append("image sizes: " + ", ".join(f"{h}x{w} ({n})" for (h, w), n in self.sizes.most_common()))
            lines.append("bands: " + ", ".join(f"{b} ({n})" for b, n in sorted(self.bands.items()))
                         + "; dtypes: " + ", ".join(f"{d} ({n})" for d, n in sorted(self.dtypes.items())))
        total = sum(self.class_pixels.values())
        if total:
            names = {IGNORE_INDEX: "ignored"}
            lines.append("pixels per class: " + ", ".join(
                f"{names.get(c, c)}: {n} ({100 * n / total:.2f}%)" for c, n in sorted(self.class_pixels.items())))
        lines.append("result: " + ("FAIL, fix the errors above before training" if self.fatal else "OK"))
        return "\n".join(lines)
