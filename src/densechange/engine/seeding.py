"""Seeds derived from (run seed, rank, step) so that any step can be replayed.

Every optimiser step reseeds the global generators and builds its own augmentation generator from
the run seed, the process rank and the step number. A resumed run therefore draws exactly what the
uninterrupted run drew, without saving or restoring generator states, and two ranks never share
augmentation draws.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; stable across processes and Python versions."""
    h = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator that drives augmentation for one optimiser step of one rank."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, rank, step, 0xA06))
    return g
