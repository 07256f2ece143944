"""The change datasets that a config names: a folder on disk, or ``synthetic`` for the embedded one.

Training samples get the dataset's random geometry (crop, flips, quarter turns); validation and
test samples are full-size images. The synthetic splits are disjoint: each split renders pairs
from its own seed.
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from datasets import ChangeDataset, SyntheticChangeDataset
from engine.errors import ConfigError

SYNTHETIC = "synthetic"
_SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}


def synthetic_split(split: str, num_pairs: int, size: int) -> SyntheticChangeDataset:
    """The embedded generator's pairs for ``split`` (train, val or test)."""
    if split not in _SYNTHETIC_SEEDS:
        raise ConfigError(f"data.root=synthetic has the splits {', '.join(_SYNTHETIC_SEEDS)}; got split '{split}'.")
    return SyntheticChangeDataset(num_pairs=num_pairs, size=size, seed=1000 + _SYNTHETIC_SEEDS[split])


def training_set(data: Any, seed: int) -> Dataset:
    """Random crops, flips and quarter turns of ``data.split`` (the synthetic pairs come as rendered)."""
    if data.root == SYNTHETIC:
        return synthetic_split(data.split, data.synthetic_pairs, data.synthetic_size)
    return ChangeDataset(data.root, data.split, crop_size=data.crop_size, flip=data.flip, rot90=data.rot90,
                         ignore_value=data.ignore_value, seed=seed, skip_incomplete=data.skip_incomplete,
                         crops_per_epoch=data.crops_per_epoch)


def overlap_warning(train: Dataset, val: Dataset) -> str | None:
    """A warning when validation scores the very pairs used for training (a folder without list files)."""
    train_names, val_names = set(getattr(train, "names", ())), set(getattr(val, "names", ()))
    shared = train_names & val_names
    if not shared or isinstance(train, SyntheticChangeDataset):
        return None
    return (f"{len(shared)} of the {len(val_names)} validation pairs are also training pairs (no list/<split>.txt files "
            "or split folders?); validation scores will be optimistic. Add list files or set data.val_split.")


def check_bands(dataset: Dataset, in_chans: int) -> None:
    """The first sample's band count must be ``data.in_chans`` (the encoder's input)."""
    bands = dataset[0]["a"].shape[0]
    if bands != in_chans:
        raise ConfigError(f"the images of the dataset have {bands} bands but data.in_chans={in_chans}; "
                          "set data.in_chans to the band count of the data.")


def evaluation_set(root: str, split: str, ignore_value: int | None, synthetic_pairs: int, synthetic_size: int,
                   skip_incomplete: bool = False) -> Dataset:
    """Full-size pairs of ``split`` for validation or testing."""
    if root == SYNTHETIC:
        return synthetic_split(split, synthetic_pairs, synthetic_size)
    return ChangeDataset(root, split, ignore_value=ignore_value, skip_incomplete=skip_incomplete)
