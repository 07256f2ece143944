"""The change datasets that a config names: a folder on disk, or ``synthetic`` for the embedded one.

Finetuning, ``densechange evaluate`` and the change probe of pretraining read their pairs through
these functions, so every layout (``data.layout.*``), OSCD's band selection (``data.bands``) and
the synthetic splits mean the same in both stages. The synthetic splits are disjoint: each split
renders pairs from its own seed.

Example:
    >>> test = evaluation_set("/data/levir", "test", None, 16, 256)
    >>> synthetic_split("val", 4, 64)[0]["label"].shape
    torch.Size([64, 64])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from torch.utils.data import Dataset

from densechange.datasets import ChangeDataset, ChangeOptions, SyntheticChangeDataset
from densechange.datasets.readers.layouts import configured_layout
from densechange.engine.errors import ConfigError

__all__ = ["SYNTHETIC", "ChangeLayoutConfig", "synthetic_split", "chosen_bands", "check_bands", "change_set",
           "evaluation_set"]

SYNTHETIC = "synthetic"
_SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}


@dataclass
class ChangeLayoutConfig:
    """The dataset's folder tree: a known public layout, detected by default, or one described here."""

    name: str = "auto"  # auto | levir-cd | s2looking | sysu-cd | cdd | dsifn-cd | whu-cd | whu-cd-single | second | custom
    a: Optional[str] = None  # first-date folder, may hold {split} (default: the named layout's, else A)
    b: Optional[str] = None  # second-date folder (default: B)
    label: Optional[str] = None  # change-label folder (default: label)
    labels: Optional[str] = None  # label decoding: binary | threshold | semantic (default: the layout's)
    groups: Optional[bool] = None  # true: the folders sit in group sub-folders (LoveDA-style)
    lists: Optional[str] = None  # split list files, e.g. list/{split}.txt (the default)
    scene: Optional[bool] = None  # true: each folder holds one whole raster, paired whatever its name (WHU-CD)


def synthetic_split(split: str, num_pairs: int, size: int) -> SyntheticChangeDataset:
    """The embedded generator's pairs for ``split`` (train, val or test)."""
    if split not in _SYNTHETIC_SEEDS:
        raise ConfigError(f"data.root=synthetic has the splits {', '.join(_SYNTHETIC_SEEDS)}; got split '{split}'.")
    return SyntheticChangeDataset(num_pairs=num_pairs, size=size, seed=1000 + _SYNTHETIC_SEEDS[split])


def chosen_bands(data: Any) -> tuple[str, ...] | None:
    """``data.bands`` as a tuple (None: every band); with ``data.in_chans``, their number must be the encoder's input."""
    bands = getattr(data, "bands", None)
    if bands is None:
        return None
    if isinstance(bands, str) or not len(bands):
        raise ConfigError(f"data.bands={bands!r}: give a list of band names, e.g. data.bands=[B04,B03,B02].")
    in_chans = getattr(data, "in_chans", None)
    if in_chans is not None and len(bands) != in_chans:
        raise ConfigError(f"data.bands names {len(bands)} bands but data.in_chans={in_chans}; set "
                          f"data.in_chans={len(bands)}.")
    return tuple(str(b) for b in bands)


def check_bands(dataset: Dataset, in_chans: int) -> None:
    """The first sample's band count must be ``data.in_chans`` (the encoder's input)."""
    bands = dataset[0]["a"].shape[0]
    if bands != in_chans:
        raise ConfigError(f"the images of the dataset have {bands} bands but data.in_chans={in_chans}; "
                          "set data.in_chans to the band count of the data (or pick bands with data.bands).")


def change_set(root: str, split: str, options: ChangeOptions, *, layout: Any = None, synthetic_pairs: int = 16,
               synthetic_size: int = 256) -> Dataset:
    """The pairs of ``split`` as ``options`` cut and decode them (``layout``: a ``data.layout`` section).

    ``root=synthetic``: the embedded generator's pairs of the split, as rendered (the options do not apply).
    """
    if root == SYNTHETIC:
        return synthetic_split(split, synthetic_pairs, synthetic_size)
    return ChangeDataset(root, split, options, layout=configured_layout("change", layout))


def evaluation_set(root: str, split: str, ignore_value: int | None, synthetic_pairs: int, synthetic_size: int,
                   skip_incomplete: bool = False, layout: Any = None, bands: Sequence[str] | None = None) -> Dataset:
    """Full-size pairs of ``split`` for validation or testing (``layout``: a ``data.layout`` section; ``bands``:
    the bands to read by name, where the layout names them)."""
    options = ChangeOptions(ignore_value=ignore_value, skip_incomplete=skip_incomplete,
                            bands=tuple(bands) if bands is not None else None)
    return change_set(root, split, options, layout=layout, synthetic_pairs=synthetic_pairs, synthetic_size=synthetic_size)
