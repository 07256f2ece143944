"""Learning-rate schedules as pure functions of the optimiser step.

A schedule that depends only on the step number needs no state of its own, so resuming restores it
for free. ``trainer.max_steps`` only stops a run early: the schedule always spans ``epochs``.
"""
from __future__ import annotations

import math

from densechange.engine.errors import ConfigError


def lr_at(step: int, total: int, base_lr: float, name: str = "poly", power: float = 0.9, warmup: int = 0, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based) of ``total`` steps.

    poly: ``base * (1 - t)^power`` (the SaDL and BIT recipes); cosine: half a cosine down to
    ``min_lr``; constant. A linear warm-up over ``warmup`` steps comes first when set.
    """
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    if name == "poly":
        return min_lr + (base_lr - min_lr) * (1.0 - t) ** power
    if name == "cosine":
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))
    if name == "constant":
        return base_lr
    raise ConfigError(f"trainer.schedule.name is '{name}'; valid values: poly, cosine, constant.")
