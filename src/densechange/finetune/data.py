"""The training pairs that a finetuning config names: a folder on disk, or ``synthetic`` for the embedded one.

Training samples get the dataset's random geometry (crop, flips, quarter turns); validation and
test samples are full-size images, read by :func:`densechange.engine.change_sets.evaluation_set`
(shared with the change probe of pretraining, and re-exported here with the synthetic splits).

``data.fraction`` trains on a seeded subset of the training pairs, to measure how a detector does
with fewer labels. Each pair's rank is a hash of ``(data.fraction_seed, name)`` and a fraction
keeps the lowest-ranked pairs, so for one seed the subsets are nested (the 20% subset lies inside
the 50% one) and do not depend on the order in which the files are listed. Validation and test
sets are never subsampled.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset

from densechange.datasets.io.sources import allow_network_sources
from densechange.datasets import ChangeDataset, ChangeOptions, SyntheticChangeDataset
from densechange.datasets.readers.layouts import configured_layout
from densechange.engine.change_sets import SYNTHETIC, check_bands, chosen_bands, evaluation_set, synthetic_split
from densechange.engine.errors import ConfigError

__all__ = ["SYNTHETIC", "synthetic_split", "check_bands", "chosen_bands", "evaluation_set", "check_fraction",
           "fraction_count", "fraction_indices", "PairSubset", "training_set", "write_pairs_file", "overlap_warning"]


def check_fraction(fraction: float) -> float:
    """``data.fraction`` must lie in (0, 1]."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"data.fraction={fraction}: give the share of training pairs to use, 0 < fraction <= 1 "
                          "(1: every pair).")
    return float(fraction)


def fraction_count(total: int, fraction: float) -> int:
    """Pairs kept of ``total`` at ``fraction``: rounded, at least one, never decreasing with the fraction."""
    return max(1, min(total, round(check_fraction(fraction) * total)))


def _rank_key(seed: int, name: str) -> bytes:
    return hashlib.blake2b(f"{int(seed)}/{name}".encode(), digest_size=8).digest()


def fraction_indices(names: Sequence[str], fraction: float, seed: int) -> list[int]:
    """Indices (in dataset order) of the pairs a fraction keeps; nested across fractions of one seed.

    Example:
        >>> small, large = fraction_indices(names, 0.2, 0), fraction_indices(names, 0.5, 0)
        >>> set(small) <= set(large)
        True
    """
    ranked = sorted(range(len(names)), key=lambda i: (_rank_key(seed, names[i]), i))
    return sorted(ranked[: fraction_count(len(names), fraction)])


class PairSubset(Dataset):
    """The pairs of ``dataset`` at ``indices``; names and the per-epoch geometry pass through.

    A kept pair keeps its sample indices in the full dataset (all its crops, when a crop plan
    cuts several from it), so it is drawn exactly as in a run on every pair.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        names = getattr(dataset, "names", None)
        self.names = [names[i] for i in self.indices] if names is not None else [str(i) for i in self.indices]
        plan = getattr(dataset, "plan", None)
        self.samples = plan.samples_of(self.indices) if plan is not None else self.indices

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.samples[index]]


def training_set(data: Any, seed: int) -> Dataset:
    """Random crops, flips and quarter turns of ``data.split`` (the synthetic pairs come as rendered).

    With ``data.fraction < 1``, the seeded subset of :func:`fraction_indices`.
    """
    fraction = check_fraction(data.fraction)
    allow_network_sources(data.allow_network_sources)
    if data.root == SYNTHETIC:
        full: Dataset = synthetic_split(data.split, data.synthetic_pairs, data.synthetic_size)
    else:
        layout = configured_layout("change", getattr(data, "layout", None))
        options = ChangeOptions(crop_size=data.crop_size, crops_per_epoch=data.crops_per_epoch, seed=seed,
                                ignore_value=data.ignore_value, skip_incomplete=data.skip_incomplete, flip=data.flip,
                                rot90=data.rot90, bands=chosen_bands(data))
        full = ChangeDataset(data.root, data.split, options, layout=layout)
    if fraction == 1:
        return full
    return PairSubset(full, fraction_indices(full.names, fraction, data.fraction_seed))  # type: ignore[attr-defined]


PAIRS_FILE = "train_pairs.txt"


def write_pairs_file(folder: Path, train: Dataset, data: Any) -> Path:
    """Record the training pairs of a run as a list file (``list/<split>.txt`` format, with a header).

    Copied into a dataset's ``list/`` folder, it trains on exactly these pairs again.
    """
    names = list(getattr(train, "names", ()))
    total = len(getattr(train, "dataset", train))
    header = (f"# {len(names)} of {total} pairs of {data.root} ({data.split}); "
              f"data.fraction={data.fraction} data.fraction_seed={data.fraction_seed}\n")
    path = folder / PAIRS_FILE
    path.write_text(header + "".join(f"{n}\n" for n in names))
    return path


def overlap_warning(train: Dataset, val: Dataset) -> str | None:
    """A warning when validation scores the very pairs used for training (a folder without list files)."""
    train_names, val_names = set(getattr(train, "names", ())), set(getattr(val, "names", ()))
    shared = train_names & val_names
    if not shared or isinstance(getattr(train, "dataset", train), SyntheticChangeDataset):  # synthetic splits differ by seed
        return None
    return (f"{len(shared)} of the {len(val_names)} validation pairs are also training pairs (no list/<split>.txt files "
            "or split folders?); validation scores will be optimistic. Add list files or set data.val_split.")
