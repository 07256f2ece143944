"""Hand-made 32x32 change pairs whose per-cell difference is known, and the seeded script that makes them.

Every 4x4 cell of a pair is one of a few kinds: the second date is the first plus a step of 0, 50 or
100 grey levels over the whole cell, and the label marks the cell changed or not. Within a cell the
first date is noise, so the bands' cell means differ by exactly the step: at stride 4 the pixel
difference of a cell is ``step / 255`` before normalisation, ``2 * step / 255`` after (mean and std 0.5).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from densechange.datasets import to_float_image, write_mask
from densechange.datasets.io.images import write_image

SIZE, CELL = 32, 4
# (step, changed) of each kind, and how often each kind occurs in the training and the test split
KINDS = ((0, 0), (50, 0), (100, 0), (100, 1), (50, 1))
FREQUENCIES = {"train": (0.6, 0.15, 0.05, 0.2, 0.0), "test": (0.6, 0.1, 0.05, 0.2, 0.05)}


def cell_kinds(split: str, index: int, seed: int = 0) -> np.ndarray:
    """``(8, 8)`` kind of every cell of pair ``index`` of ``split``."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
    return rng.choice(len(KINDS), size=(SIZE // CELL, SIZE // CELL), p=FREQUENCIES[split])


def pair_arrays(split: str, index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a``, ``b`` ``(32, 32, 3)`` uint8 (three equal bands) and the 0/1 label ``(32, 32)`` uint8."""
    kinds = cell_kinds(split, index, seed)
    steps = np.array([s for s, _ in KINDS])[kinds].repeat(CELL, 0).repeat(CELL, 1)
    label = np.array([c for _, c in KINDS])[kinds].repeat(CELL, 0).repeat(CELL, 1).astype(np.uint8)
    a = np.random.default_rng([seed, 7, index, 0 if split == "train" else 1]).integers(20, 121, (SIZE, SIZE))
    b = a + steps
    return (np.repeat(a[..., None], 3, 2).astype(np.uint8), np.repeat(b[..., None], 3, 2).astype(np.uint8), label)


class HandPairs(Dataset):
    """The pairs of one split as change samples (``same_dates``: the second date is the first)."""

    def __init__(self, split: str, count: int, seed: int = 0, same_dates: bool = False) -> None:
        self.split, self.count, self.seed, self.same_dates = split, count, seed, same_dates

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        a, b, label = pair_arrays(self.split, index, self.seed)
        return {"a": to_float_image(a), "b": to_float_image(a if self.same_dates else b),
                "label": torch.from_numpy(label.astype(np.int64)), "name": f"{self.split}_{index:02d}"}


def cell_steps(split: str, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Step and label of every cell of the split's pairs, flat."""
    kinds = np.concatenate([cell_kinds(split, i, seed).ravel() for i in range(count)])
    return np.array([s for s, _ in KINDS])[kinds], np.array([c for _, c in KINDS])[kinds]


def write_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """The splits as a change dataset folder: ``A/``, ``B/``, ``label/`` (0/255 PNG) and ``list/<split>.txt``."""
    for split, count in counts.items():
        names = []
        for i in range(count):
            a, b, label = pair_arrays(split, i, seed)
            name = f"{split}_{i:02d}.png"
            write_image(root / "A" / name, a)
            write_image(root / "B" / name, b)
            write_mask(root / "label" / name, label * np.uint8(255))
            names.append(name)
        (root / "list").mkdir(parents=True, exist_ok=True)
        (root / "list" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root
