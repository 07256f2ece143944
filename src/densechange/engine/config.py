"""Structured configuration: typed dataclasses, YAML files and ``key=value`` overrides.

OmegaConf structured configs turn a misspelt key into an error that names the key, so a typo
never silently falls back to a default. Stage-specific schemas compose the shared
:class:`TrainerConfig` and :class:`RunConfig` defined here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Type

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from densechange.atomic import write_atomically
from densechange.engine.config_docs import describe
from densechange.engine.errors import ConfigError
from densechange.engine.precision import PRECISIONS


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # sgd momentum
    weight_decay: float = 5e-4  # weight decay (sgd: an L2 term; adamw: decoupled); see decay_norm_and_bias
    betas: tuple[float, float] = (0.9, 0.999)  # adamw's decay rates of the first and second moments
    decay_norm_and_bias: bool = False  # true: weight decay on every parameter (the SaDL / BIT reference recipes)


@dataclass
class ScheduleConfig:
    name: str = "poly"  # poly | cosine | constant
    power: float = 0.9  # poly: lr = min_lr + (lr - min_lr) * (1 - t)^power, t the share of the schedule done
    warmup_steps: int = 0  # linear warm-up over the first N optimiser steps (0: none)
    min_lr: float = 0.0  # poly and cosine: the learning rate at the schedule's end


@dataclass
class TrainerConfig:
    epochs: int = 200  # passes over the training data; the learning-rate schedule spans them
    max_steps: Optional[int] = None  # stop after this many optimiser steps (the schedule still spans epochs); null: no limit
    batch_size: int = 64  # per process
    accumulate: int = 1  # micro-batches per optimiser step
    precision: str = "auto"  # auto (bf16 where the device runs it natively, else fp32) | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = True  # channels-last memory format: faster convolutions on CUDA and on the CPU (bench/)
    compile: bool = False  # torch.compile the task's heavy modules (see engine.speed)
    tf32: bool = True  # CUDA: TF32 matrix products and convolutions for fp32 work
    cudnn_benchmark: bool = True  # CUDA: pick the fastest convolution algorithm for the run's shapes
    dist_timeout_s: int = 1800  # process-group timeout: the longest a rank may wait in a collective
    sync_bn: bool = False  # SyncBatchNorm across the processes of a torchrun (CUDA only)
    num_workers: int = 2  # DataLoader workers per process
    clip_grad: Optional[float] = None  # clip the gradient norm to this; null: no clipping
    resume: Optional[str] = None  # auto | PATH
    save_every: int = 0  # also write the resume checkpoint every N steps (0: only per epoch)
    log_every: int = 10  # optimiser steps between log.jsonl records (and the last step)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class RunConfig:
    dir: str = "runs/default"  # run folder: config.yaml, logs, checkpoints
    seed: int = 0  # seed of data order, augmentation and initialisation
    tensorboard: bool = True  # also write TensorBoard event files into the run folder (tensorboard --logdir RUN); false: only the JSON lines


_CHOICES = {
    "trainer.precision": PRECISIONS,
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.optim.name": ("sgd", "adamw"),
    "trainer.schedule.name": ("poly", "cosine", "constant"),
}


def _known_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else []:
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys.extend(_known_keys(v, full + "."))
    return keys


def _explain(err: OmegaConfBaseException, schema: DictConfig, where: str) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "not in struct" in str(err) or "Key '" in str(err) and "not in" in str(err):
        near = difflib.get_close_matches(key, _known_keys(schema), n=3)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        return ConfigError(f"unknown config key '{key}' in {where}.{hint}")
    if isinstance(err, ValidationError):
        return ConfigError(f"invalid value for config key '{key}' in {where}: {err.msg if hasattr(err, 'msg') else err}")
    return ConfigError(f"bad config in {where}: {err}")


def check_choices(cfg: DictConfig, choices: dict[str, Sequence[str]]) -> None:
    """Raise :class:`ConfigError` when a string key holds a value outside its valid set."""
    for key, valid in {**_CHOICES, **choices}.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in valid:
            raise ConfigError(f"config key '{key}' is '{value}'; valid values: {', '.join(valid)}.")


def load_config(
    schema: Type,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    choices: dict[str, Sequence[str]] | None = None,
    required: Sequence[str] = (),
    values: dict[str, Any] | None = None,
) -> DictConfig:
    """Merge ``schema`` defaults, a YAML file, verbatim ``values`` and ``key=value`` overrides, in that order.

    Args:
        schema: a dataclass type describing every valid key.
        config_file: optional YAML file.
        overrides: command-line style ``a.b=value`` strings.
        choices: extra ``key -> valid values`` checks for string keys.
        required: keys that must be set (e.g. ``data.root``).
        values: ``key -> value`` set as given, not parsed as YAML (a command's positional paths).
    Returns:
        The merged, read-only config.
    """
    base = OmegaConf.structured(schema)
    merged = base
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}. Pass an existing YAML file to --config.")
        try:
            loaded = OmegaConf.load(path)
        except Exception as err:  # YAML syntax errors come in many types
            raise ConfigError(f"cannot parse config file {path}: {err}") from None
        try:
            merged = OmegaConf.merge(merged, loaded)
        except OmegaConfBaseException as err:
            raise _explain(err, base, str(path)) from None
    for key, value in (values or {}).items():
        try:
            OmegaConf.update(merged, key, value, merge=True)  # struct mode: the key must exist
        except OmegaConfBaseException as err:
            raise _explain(err, base, f"the argument for '{key}'") from None
    text_keys = {k.name for k in describe(schema) if k.type == "str"}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' is not of the form key=value.")
        key, value = item.split("=", 1)
        try:
            if key in text_keys and value not in ("null", "~"):
                # a text key takes the text as typed: YAML would read a hash prefix 0123 as the octal 83
                OmegaConf.update(merged, key, _unquoted(value), merge=True)
            else:
                merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _explain(err, base, f"command-line override '{item}'") from None
    for key in required:
        value = OmegaConf.select(merged, key, default=None, throw_on_missing=False)
        if value in (None, "", "???"):
            raise ConfigError(f"config key '{key}' is required; set it in the YAML file or pass {key}=... on the command line.")
    try:
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"config key '{err.full_key}' is required but has no value.") from None
    except OmegaConfBaseException as err:
        raise _explain(err, base, "the config") from None
    check_choices(merged, choices or {})
    OmegaConf.set_readonly(merged, True)
    return merged


def _unquoted(value: str) -> str:
    """``'a b'`` or ``"a b"`` -> ``a b``: a quoted value means its text, as in YAML."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def to_dict(cfg: DictConfig) -> dict:
    """Plain resolved dict, for checkpoint metadata and JSON logs."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML, whole or not at all."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    write_atomically(Path(path), lambda tmp: tmp.write_text(text))
