"""The training loop both stages run.

It reads top to bottom like the algorithm: learning rate -> micro-steps (autocast, loss divided by
the accumulation count, backward; gradients sync on the last micro-step only) -> clip -> step ->
log -> periodic resume checkpoint; at each epoch end: evaluation, best model, resume checkpoint.

The task is any ``nn.Module`` whose ``forward(batch, generator=...)`` returns
``{"loss": scalar, **terms}``; the loop never knows which method it runs.

One process::

    python -m pretrain --config configs/pretrain/demo.yaml

Many processes (one per GPU, or CPU processes with gloo)::

    torchrun --nproc_per_node=8 -m pretrain --config configs/pretrain/sadl_resnet18.yaml
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset
from tqdm import tqdm

from .config import ConfigError
from .distributed import DistInfo, all_reduce_mean, all_reduce_sum, barrier
from .data import ShardedSampler, make_loader, to_device
from .runlog import JsonlLog, truncate_jsonl
from .schedule import lr_at
from .seeding import derive_seed, seed_everything, step_generator
from .state import LoopState, load_state, save_state

LAST = "last.safetensors"

Evaluate = Callable[[nn.Module, int], dict[str, float]]
OnBest = Callable[[nn.Module, dict[str, float]], None]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


@dataclass
class RunContext:
    """Where and how this process runs: run folder, process group, seed and resolved config."""

    dir: Path
    dist: DistInfo
    seed: int
    config: dict[str, Any]

    @property
    def is_main(self) -> bool:
        return self.dist.is_main


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """SGD or AdamW; norms and biases (1-D parameters) get no weight decay unless ``decay_norm_and_bias``."""
    every = cfg.decay_norm_and_bias
    decay = [p for p in model.parameters() if p.requires_grad and (p.dim() > 1 or every)]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1 and not every]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ValueError(f"trainer.optim.name is '{cfg.name}'; valid values: sgd, adamw.")


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision context: bf16 or fp16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def validate_trainer(cfg: Any, device: torch.device) -> None:
    """Reject trainer settings that would crash later or silently mean something else."""
    positive = {"trainer.epochs": cfg.epochs, "trainer.batch_size": cfg.batch_size, "trainer.accumulate": cfg.accumulate,
                "trainer.log_every": cfg.log_every}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value}; it must be at least 1.")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ConfigError(f"trainer.max_steps={cfg.max_steps}; give a positive number of steps, or null for no limit.")
    if cfg.save_every < 0 or cfg.num_workers < 0:
        raise ConfigError("trainer.save_every and trainer.num_workers must not be negative.")
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel); set trainer.sync_bn=false.")


def resolve_resume(resume: Optional[str], run_dir: Path) -> Optional[Path]:
    """``auto`` -> the run folder's last checkpoint when present; a path must exist."""
    if resume in (None, "", "none"):
        if (run_dir / LAST).exists():
            raise ValueError(
                f"run folder {run_dir} already holds a resume checkpoint ({LAST}). "
                "Pass trainer.resume=auto to continue it, or choose another run.dir."
            )
        return None
    if resume == "auto":
        return run_dir / LAST if (run_dir / LAST).exists() else None
    path = Path(resume)
    if not path.is_file():
        raise ValueError(f"trainer.resume={resume}: no such file. Use 'auto' or the path of a last.safetensors.")
    return path


def fit(
    task: nn.Module,
    train_set: Dataset,
    cfg: Any,
    ctx: RunContext,
    *,
    evaluate: Optional[Evaluate] = None,
    best_key: Optional[str] = None,
    on_best: Optional[OnBest] = None,
) -> tuple[nn.Module, LoopState]:
    """Train ``task`` on ``train_set`` with the trainer config ``cfg``; returns the unwrapped task.

    Args:
        task: module returning ``{"loss", **terms}`` from ``forward(batch, generator=)``.
        train_set: map-style dataset of dict samples; may define ``set_epoch(epoch)``.
        cfg: the ``trainer`` section (see :class:`pretrain.engine.config.TrainerConfig`).
        ctx: run folder, process group, seed and resolved config.
        evaluate: called on every rank at each epoch end; returns scalar metrics.
        best_key: metric that selects the best epoch (higher is better).
        on_best: called on rank 0 with the unwrapped task when ``best_key`` improves.
    """
    dist, device = ctx.dist, ctx.dist.device
    validate_trainer(cfg, device)
    model = task.to(device)
    if cfg.sync_bn and dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    sampler = ShardedSampler(len(train_set), dist.rank, dist.world_size, cfg.batch_size, seed=ctx.seed)
    per_step = cfg.accumulate
    steps_per_epoch = sampler.batches // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set has {len(train_set)} samples, too few for one step of "
            f"{dist.world_size} process(es) x batch {cfg.batch_size} x {per_step} micro-batches; "
            "lower trainer.batch_size or add data."
        )
    total = cfg.epochs * steps_per_epoch
    stop_at = min(total, cfg.max_steps) if cfg.max_steps else total

    loop = LoopState()
    resume = resolve_resume(cfg.resume, ctx.dir)
    if resume is not None:
        loop = load_state(resume, model, optimizer, scaler)
        if ctx.is_main:  # steps logged after the checkpoint were undone by the crash: drop them
            truncate_jsonl(ctx.dir / "log.jsonl", "step", loop.step)
            truncate_jsonl(ctx.dir / "metrics.jsonl", "epoch", loop.epoch - 1)
            print(f"resumed from {resume} at step {loop.step} (epoch {loop.epoch}, step {loop.step_in_epoch} of the epoch)")

    net: nn.Module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.distributed else model
    log = JsonlLog(ctx.dir / "log.jsonl" if ctx.is_main else None)
    metrics_log = JsonlLog(ctx.dir / "metrics.jsonl" if ctx.is_main else None)
    bar = tqdm(total=stop_at, initial=loop.step, disable=not ctx.is_main, desc="train", dynamic_ncols=True)
    images_per_step = cfg.batch_size * per_step * dist.world_size

    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss since the start; no sync per step
    saved_at = -1

    def ensure_finite() -> None:
        """Stop before anything is logged, evaluated or saved once a loss went non-finite on any rank."""
        if all_reduce_sum(bad.float()).item() > 0:
            raise TrainingError(
                f"a non-finite loss appeared by step {loop.step}; training stopped and nothing was saved after it. "
                f"The last good checkpoint is {ctx.dir / LAST}. Lower trainer.optim.lr or use trainer.precision=fp32."
            )

    def checkpoint() -> None:
        nonlocal saved_at
        ensure_finite()
        if ctx.is_main:
            save_state(ctx.dir / LAST, model, optimizer, scaler, loop, ctx.config)
        saved_at = loop.step
        barrier()

    model.train()
    window_start, window_steps = time.perf_counter(), 0
    while loop.step < stop_at:
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(loop.epoch)
        sampler.set_epoch(loop.epoch, start_batch=loop.step_in_epoch * per_step)
        batches = iter(make_loader(train_set, sampler, cfg.num_workers, device.type == "cuda"))
        while loop.step_in_epoch < steps_per_epoch and loop.step < stop_at:
            lr = lr_at(loop.step, total, cfg.optim.lr, cfg.schedule.name, cfg.schedule.power, cfg.schedule.warmup_steps, cfg.schedule.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            seed_everything(derive_seed(ctx.seed, dist.rank, loop.step))
            gen = step_generator(ctx.seed, dist.rank, loop.step)
            terms: dict[str, torch.Tensor] = {}
            for micro in range(per_step):
                batch = to_device(next(batches), device, cfg.channels_last)
                sync = micro == per_step - 1
                no_sync = net.no_sync() if (dist.distributed and not sync) else contextlib.nullcontext()
                with no_sync:
                    with autocast_for(device, cfg.precision):
                        out = net(batch, generator=gen)
                    scaler.scale(out["loss"].float() / per_step).backward()
                bad |= ~torch.isfinite(out["loss"].detach())
                for k, v in out.items():
                    terms[k] = terms.get(k, 0.0) + v.detach().float() / per_step
            if cfg.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            loop.step += 1
            loop.step_in_epoch += 1
            window_steps += 1
            bar.update(1)

            if loop.step % cfg.log_every == 0 or loop.step == stop_at:
                ensure_finite()
                names = sorted(terms)
                values = all_reduce_mean(torch.stack([terms[k] for k in names]))
                record = {k: float(v) for k, v in zip(names, values.tolist())}
                elapsed = time.perf_counter() - window_start
                log.write({"step": loop.step, "epoch": loop.epoch, **record, "lr": lr, "images_per_s": images_per_step * window_steps / max(elapsed, 1e-9)})
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                window_start, window_steps = time.perf_counter(), 0
            if cfg.save_every and loop.step % cfg.save_every == 0 and loop.step < stop_at:
                checkpoint()

        if loop.step_in_epoch < steps_per_epoch:  # stopped by max_steps inside an epoch
            break
        epoch = loop.epoch
        loop.epoch += 1
        loop.step_in_epoch = 0
        if evaluate is not None:
            ensure_finite()
            metrics = evaluate(model, epoch)
            model.train()
            loop.history.append({"epoch": epoch, "step": loop.step, **metrics})
            metrics_log.write({"epoch": epoch, "step": loop.step, **metrics})
            if best_key is not None and best_key in metrics:
                value = metrics[best_key]
                if loop.best_metric is None or value > loop.best_metric:
                    loop.best_metric, loop.best_epoch = value, epoch
                    if ctx.is_main and on_best is not None:
                        on_best(model, metrics)
        checkpoint()
    if saved_at != loop.step:  # stopped by max_steps inside an epoch
        checkpoint()
    bar.close()
    log.close()
    metrics_log.close()
    return model, loop
