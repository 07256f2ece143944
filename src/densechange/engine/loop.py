"""The training loop both stages run.

It reads top to bottom like the algorithm: learning rate -> micro-steps (autocast, loss divided by
the accumulation count, backward; gradients sync on the last micro-step only) -> clip -> step ->
log -> periodic resume checkpoint; at each epoch end: evaluation, best model, resume checkpoint.
Every record of ``log.jsonl`` and ``metrics.jsonl`` also goes to the run's TensorBoard stream
(:mod:`densechange.engine.board`), and a run that ends writes its config there as hyper-parameters.

The task is any ``nn.Module`` whose ``forward(batch, generator=...)`` returns
``{"loss": scalar, **terms}``; the loop never knows which method it runs.

One process::

    densechange pretrain --config configs/pretrain/demo.yaml

Many processes (one per GPU, or CPU processes with gloo)::

    torchrun --nproc_per_node=8 -m densechange.pretrain --config configs/pretrain/sadl_resnet18.yaml
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset
from tqdm import tqdm

from densechange.engine.board import RunBoard
from densechange.engine.data import ShardedSampler, make_loader, batch_to_device
from densechange.engine.distributed import DistInfo, all_reduce_mean, all_reduce_sum, barrier, broadcast_buffers
from densechange.engine.errors import ConfigError, TrainingError
from densechange.engine.precision import autocast_for, choose_precision, resolve_precision
from densechange.engine.runlog import JsonlLog, truncate_jsonl
from densechange.engine.schedule import lr_at
from densechange.engine.seeding import derive_seed, seed_everything, step_generator
from densechange.engine.speed import compile_task, configure_cuda
from densechange.engine.state import LoopState, load_state, save_state

LAST = "last.safetensors"

Evaluate = Callable[[nn.Module, int], dict[str, float]]
OnBest = Callable[[nn.Module, dict[str, float]], None]


@dataclass
class RunContext:
    """Where and how this process runs: run folder, process group, seed, resolved config, TensorBoard stream."""

    dir: Path
    dist: DistInfo
    seed: int
    config: dict[str, Any]
    board: RunBoard = field(default_factory=RunBoard)  # writes on rank 0 unless run.tensorboard=false; else nothing

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
    raise ConfigError(f"trainer.optim.name is '{cfg.name}'; valid values: sgd, adamw.")


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
            raise ConfigError(
                f"run folder {run_dir} already holds a resume checkpoint ({LAST}). "
                "Pass trainer.resume=auto to continue it, or choose another run.dir."
            )
        return None
    if resume == "auto":
        return run_dir / LAST if (run_dir / LAST).exists() else None
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"trainer.resume={resume}: no such file. Use 'auto' or the path of a last.safetensors.")
    return path


class _Training:
    """The state of one ``fit`` call; each method is one phase of the algorithm."""

    def __init__(self, task: nn.Module, train_set: Dataset, cfg: Any, ctx: RunContext, metrics_group: str) -> None:
        """Set-up: model on the device, optimiser, sampler, step counts, logs."""
        self.cfg, self.ctx, self.train_set, self.metrics_group = cfg, ctx, train_set, metrics_group
        dist, device = ctx.dist, ctx.dist.device
        validate_trainer(cfg, device)
        configure_cuda(device, tf32=cfg.tf32, cudnn_benchmark=cfg.cudnn_benchmark)
        self.precision = choose_precision(cfg.precision, device)
        resolve_precision(cfg.precision, device, warn=ctx.is_main)
        model = task.to(device)
        if cfg.sync_bn and dist.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.compile:
            compile_task(model)
        self.model = model
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.precision == "fp16")
        if ctx.is_main:
            print(f"precision {self.precision.precision} ({self.precision.reason}); channels_last={cfg.channels_last}, "
                  f"compile={cfg.compile}", flush=True)
        self.sampler = ShardedSampler(len(train_set), dist.rank, dist.world_size, cfg.batch_size, seed=ctx.seed)
        self.loader = make_loader(train_set, self.sampler, cfg.num_workers, device.type == "cuda")
        self.per_step = cfg.accumulate
        self.steps_per_epoch = self.sampler.batches // self.per_step
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the training set has {len(train_set)} samples, too few for one step of "
                f"{dist.world_size} process(es) x batch {cfg.batch_size} x {self.per_step} micro-batches; "
                "lower trainer.batch_size or add data."
            )
        self.total = cfg.epochs * self.steps_per_epoch
        self.stop_at = min(self.total, cfg.max_steps) if cfg.max_steps else self.total
        self.loop = LoopState()
        self.bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far; no sync per step
        self.saved_at = -1
        self.images_per_step = cfg.batch_size * self.per_step * dist.world_size

    def resume(self) -> None:
        """Continue from the resume checkpoint, if any; drop the log records the crash undid."""
        path = resolve_resume(self.cfg.resume, self.ctx.dir)
        if path is not None:
            self.loop = load_state(path, self.model, self.optimizer, self.scaler)
            if self.ctx.is_main:
                truncate_jsonl(self.ctx.dir / "log.jsonl", "step", self.loop.step)
                truncate_jsonl(self.ctx.dir / "metrics.jsonl", "epoch", self.loop.epoch - 1)
                print(f"resumed from {path} at step {self.loop.step} (epoch {self.loop.epoch}, "
                      f"step {self.loop.step_in_epoch} of the epoch)")
        dist = self.ctx.dist
        device = dist.device
        self.net = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None) if dist.distributed else self.model
        self.log = JsonlLog(self.ctx.dir / "log.jsonl" if self.ctx.is_main else None)
        self.metrics_log = JsonlLog(self.ctx.dir / "metrics.jsonl" if self.ctx.is_main else None)
        self.bar = tqdm(total=self.stop_at, initial=self.loop.step, disable=not self.ctx.is_main, desc="train",
                        dynamic_ncols=True)

    def epoch(self) -> bool:
        """Run the rest of the current epoch; False when ``max_steps`` stopped it part-way."""
        loop = self.loop
        self.sampler.set_epoch(loop.epoch, start_batch=loop.step_in_epoch * self.per_step)
        batches = iter(self.loader)
        self.model.train()
        self.window_start, self.window_steps = time.perf_counter(), 0
        while loop.step_in_epoch < self.steps_per_epoch and loop.step < self.stop_at:
            lr, terms = self.step(batches)
            if loop.step % self.cfg.log_every == 0 or loop.step == self.stop_at:
                self.write_log(lr, terms)
            if self.cfg.save_every and loop.step % self.cfg.save_every == 0 and loop.step < self.stop_at:
                self.checkpoint()
        return loop.step_in_epoch >= self.steps_per_epoch

    def step(self, batches: Iterator[Any]) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimiser step: lr, micro-steps (autocast, backward; sync on the last), clip, update."""
        cfg, ctx, loop = self.cfg, self.ctx, self.loop
        device, rank = ctx.dist.device, ctx.dist.rank
        lr = lr_at(loop.step, self.total, cfg.optim.lr, cfg.schedule.name, cfg.schedule.power, cfg.schedule.warmup_steps,
                   cfg.schedule.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        seed_everything(derive_seed(ctx.seed, rank, loop.step))
        gen = step_generator(ctx.seed, rank, loop.step)
        terms: dict[str, torch.Tensor] = {}
        for micro in range(self.per_step):
            batch = batch_to_device(next(batches), device, cfg.channels_last)
            last = micro == self.per_step - 1
            no_sync = self.net.no_sync() if (ctx.dist.distributed and not last) else contextlib.nullcontext()
            with no_sync:
                with autocast_for(device, self.precision.precision):
                    out = self.net(batch, generator=gen)
                self.scaler.scale(out["loss"].float() / self.per_step).backward()
            self.bad |= ~torch.isfinite(out["loss"].detach())
            for k, v in out.items():
                terms[k] = terms.get(k, 0.0) + v.detach().float() / self.per_step
        if cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        loop.step += 1
        loop.step_in_epoch += 1
        self.window_steps += 1
        self.bar.update(1)
        return lr, terms

    def write_log(self, lr: float, terms: dict[str, torch.Tensor]) -> None:
        """Average the step's terms over ranks and append them to ``log.jsonl`` with lr and images/s."""
        self.ensure_finite()
        names = sorted(terms)
        values = all_reduce_mean(torch.stack([terms[k] for k in names]))
        record = {k: float(v) for k, v in zip(names, values.tolist())}
        elapsed = time.perf_counter() - self.window_start
        record.update(lr=lr, images_per_s=self.images_per_step * self.window_steps / max(elapsed, 1e-9))
        self.log.write({"step": self.loop.step, "epoch": self.loop.epoch, **record, "precision": self.precision.precision})
        self.ctx.board.scalars("train", record, self.loop.step)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        self.window_start, self.window_steps = time.perf_counter(), 0

    def end_epoch(self, evaluate: Optional[Evaluate], best_key: Optional[str], on_best: Optional[OnBest]) -> None:
        """Count the epoch, evaluate, keep the best model, write the resume checkpoint."""
        loop = self.loop
        epoch = loop.epoch
        loop.epoch += 1
        loop.step_in_epoch = 0
        if evaluate is not None:
            self.ensure_finite()
            broadcast_buffers(self.model)  # every rank evaluates the model rank 0 saves
            self.ctx.board.step = loop.step  # pictures made while evaluating line up with the epoch's metrics
            metrics = evaluate(self.model, epoch)
            self.model.train()
            loop.history.append({"epoch": epoch, "step": loop.step, **metrics})
            self.metrics_log.write({"epoch": epoch, "step": loop.step, **metrics})
            self.ctx.board.scalars(self.metrics_group, metrics, loop.step)
            self.ctx.board.flush()
            if best_key is not None and best_key in metrics:
                value = metrics[best_key]
                if loop.best_metric is None or value > loop.best_metric:
                    loop.best_metric, loop.best_epoch = value, epoch
                    if self.ctx.is_main and on_best is not None:
                        on_best(self.model, metrics)
        self.checkpoint()

    def ensure_finite(self) -> None:
        """Stop before anything is logged, evaluated or saved once a loss went non-finite on any rank."""
        if all_reduce_sum(self.bad.float()).item() > 0:
            raise TrainingError(
                f"a non-finite loss appeared by step {self.loop.step}; training stopped and nothing was saved after "
                f"it. The last good checkpoint is {self.ctx.dir / LAST}. Lower trainer.optim.lr or use "
                "trainer.precision=fp32."
            )

    def checkpoint(self) -> None:
        """Write the resume state atomically (rank 0), then wait for every rank."""
        self.ensure_finite()
        if self.ctx.is_main:
            save_state(self.ctx.dir / LAST, self.model, self.optimizer, self.scaler, self.loop, self.ctx.config)
        self.saved_at = self.loop.step
        barrier()

    def finish(self) -> None:
        """Write the resolved config as the run's hyper-parameters (their results: the curves' last values)."""
        board = self.ctx.board
        board.step = self.loop.step
        if board.moved_on:
            board.hparams(self.ctx.config)
            board.flush()

    def close(self) -> None:
        self.bar.close()
        self.log.close()
        self.metrics_log.close()


def fit(
    task: nn.Module,
    train_set: Dataset,
    cfg: Any,
    ctx: RunContext,
    *,
    evaluate: Optional[Evaluate] = None,
    best_key: Optional[str] = None,
    on_best: Optional[OnBest] = None,
    metrics_group: str = "epoch",
) -> tuple[nn.Module, LoopState]:
    """Train ``task`` on ``train_set`` with the trainer config ``cfg``; returns the unwrapped task.

    Args:
        task: module returning ``{"loss", **terms}`` from ``forward(batch, generator=)``.
        train_set: map-style dataset of dict samples; may define ``set_epoch(epoch)``.
        cfg: the ``trainer`` section (see :class:`densechange.engine.config.TrainerConfig`).
        ctx: run folder, process group, seed and resolved config.
        evaluate: called on every rank at each epoch end; returns scalar metrics.
        best_key: metric that selects the best epoch (higher is better).
        on_best: called on rank 0 with the unwrapped task when ``best_key`` improves.
        metrics_group: TensorBoard section of the per-epoch metrics (``GROUP/KEY``); the training
            records go to ``train/KEY``.
    """
    run = _Training(task, train_set, cfg, ctx, metrics_group)
    run.resume()
    try:
        while run.loop.step < run.stop_at:
            if not run.epoch():  # stopped by max_steps inside an epoch
                break
            run.end_epoch(evaluate, best_key, on_best)
        if run.saved_at != run.loop.step:
            run.checkpoint()
        run.finish()
    finally:
        run.close()
    return run.model, run.loop
