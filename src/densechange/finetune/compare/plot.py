"""``f1_vs_fraction.png``: test F1 against the label fraction, one line per encoder x variant.

Drawn with matplotlib (the ``plot`` extra: ``pip install 'densechange[plot]'``) on its
file-only backend, so no display is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from densechange.engine.errors import ConfigError

from densechange.finetune.compare.stats import Row, summarise
from densechange.finetune.compare.tables import groups_in_order


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the F1-against-fraction plot needs matplotlib: pip install 'densechange[plot]' "
                          "(or pass grid.plot=false).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_f1_vs_fraction(rows: Sequence[Row], path: Path, metric: str = "f1", title: str = "") -> Path:
    """Mean over seeds with a bar of ± one standard deviation (when there are two or more seeds)."""
    plt = _pyplot()
    lines: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for (encoder, variant, fraction), runs in groups_in_order(rows).items():
        s = summarise([float(r[metric]) for r in runs])
        lines.setdefault((encoder, variant), []).append((fraction, s.mean, 0.0 if s.n < 2 else s.std))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for (encoder, variant), points in lines.items():
        points.sort()
        xs, ys, es = zip(*points)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{encoder} / {variant}")
    fractions = sorted({p[0] for pts in lines.values() for p in pts})
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.set_xlabel("label fraction (share of training pairs)")
    ax.set_ylabel(f"test {metric.upper() if metric == 'f1' else metric} (change class)")
    ax.set_title(title or "F1 against label fraction (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
