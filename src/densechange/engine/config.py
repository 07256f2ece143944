"""Structured configuration: typed dataclasses, YAML files and ``key=value`` overrides.

OmegaConf structured configs turn a misspelt key into an error that names the key, so a typo
never silently falls back to a default. Stage-specific schemas compose the shared
:class:`TrainerConfig` and :class:`RunConfig` defined here.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Type

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from densechange.atomic import write_atomically
from densechange.redact import redact_text, redact_tree
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
        except yaml.YAMLError as err:  # the value is parsed as YAML: '&' starts an anchor, ':' a mapping...
            raise ConfigError(f"command-line override '{item}' is not valid YAML ({' '.join(str(err).split())}); "
                              "quote the value, e.g. key='[\"a&b\"]'.") from None
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
    """Plain resolved dict, for the values a run uses (never for what it records: see :func:`recorded_config`)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def recorded_config(cfg: DictConfig) -> dict:
    """The config as artefacts record it: resolved, but nothing of the environment and no URL secrets.

    Run folders, checkpoint metadata, model cards, ONNX files and reports are published, so what
    they record must not hold what the machine's environment put in: a value that came from the
    environment, directly (``${oc.env:TOKEN}``) or through other keys (``${model.registry}``), is
    recorded as the reference it was written as, and every other value resolved. URLs keep their
    scheme, host and path, with the query's values and any user-info masked
    (:func:`densechange.redact.redact_text`).

    The other choice, recording the config as written with every interpolation unresolved, would
    leave readers of ``config.yaml`` and of the metadata (model cards, exports, reports) to resolve
    it themselves, without the machine's environment, and would hide the values the run actually
    used; this keeps every value a reader can use, and where a value came from when it is secret.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    resolved = to_dict(cfg)
    try:
        marked = OmegaConf.to_container(OmegaConf.create(_mark_environment(raw)), resolve=True)
    except OmegaConfBaseException:  # an interpolation that cannot resolve without its real value: keep them all as written
        marked = _mark_interpolations(raw)
    return _record(raw, resolved, marked)


_ENV_RE = re.compile(r"\$\{\s*oc\.env\s*:")
_MARK = "\x00from-the-environment\x00"


def _mark_environment(raw: Any) -> Any:
    """A copy of the unresolved config where every value that reads the environment is a marker string."""
    if isinstance(raw, dict):
        return {k: _mark_environment(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_mark_environment(v) for v in raw]
    return _MARK if isinstance(raw, str) and _ENV_RE.search(raw) else raw


def _mark_interpolations(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _mark_interpolations(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_mark_interpolations(v) for v in raw]
    return _MARK if isinstance(raw, str) and "${" in raw else raw


def _holds_mark(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_mark(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_mark(v) for v in value)
    return isinstance(value, str) and _MARK in value


def _record(raw: Any, resolved: Any, marked: Any) -> Any:
    """``resolved``, where ``marked`` shows an environment value: the ``raw`` reference there instead."""
    if not _holds_mark(marked):
        return redact_tree(resolved)
    if isinstance(raw, dict) and isinstance(resolved, dict) and isinstance(marked, dict):
        return {k: _record(raw.get(k), v, marked.get(k)) for k, v in resolved.items()}
    if isinstance(raw, list) and isinstance(resolved, list) and isinstance(marked, list) and len(raw) == len(resolved):
        return [_record(r, v, m) for r, v, m in zip(raw, resolved, marked)]
    # the node itself reads the environment (or is an interpolation of one that does): its reference, as written,
    # with any literal secret in a URL beside the reference masked
    return redact_text(raw, keep_references=True) if isinstance(raw, str) else redact_tree(raw)


def print_config(cfg: DictConfig) -> str:
    """The YAML that ``--print-config`` shows: the recorded form (environment values as their references)."""
    return OmegaConf.to_yaml(OmegaConf.create(recorded_config(cfg)))


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the recorded config (:func:`recorded_config`) as YAML, whole or not at all."""
    text = print_config(cfg)
    write_atomically(Path(path), lambda tmp: tmp.write_text(text))
