"""Finetune a change detector with DeepCL on a bi-temporal dataset.

    densechange finetune --config configs/finetune/deepcl_resnet18.yaml data.root=/data/my_cd model.encoder=PATH
    torchrun --nproc_per_node=4 -m densechange.finetune --config configs/finetune/deepcl_resnet18.yaml data.root=/data/my_cd

The run folder gets ``config.yaml``, ``train_pairs.txt`` (the training pairs, a subset with
``data.fraction``), ``log.jsonl`` (training terms), ``metrics.jsonl`` (validation
metrics of every epoch), ``val_images/`` (A | B | label | prediction pictures of a few validation
pairs per epoch), the resume checkpoint ``last.safetensors``, ``best.safetensors`` (the change
model of the epoch with the best change-class F1) and, at the end, ``final.safetensors``. TensorBoard
event files mirror the logs (``train/``, ``val/``) and the validation pictures (``tensorboard --logdir
RUN``; ``run.tensorboard=false`` switches them off).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from densechange.datasets import ChangeDataset
from densechange.engine.board import RunBoard
from densechange.engine.cli import parse_command, run_cli
from densechange.engine.config import to_dict
from densechange.engine.loop import RunContext, fit
from densechange.engine.precision import resolve_precision
from densechange.engine.seeding import derive_seed, seed_everything
from densechange.engine.session import open_run_folder, training_session, training_spec

from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.config import CHOICES, FinetuneConfig, ValConfig
from densechange.finetune.data import check_bands, chosen_bands, evaluation_set, overlap_warning, training_set, write_pairs_file
from densechange.finetune.deepcl.losses import ChangeLoss, HardSampleContrastiveLoss
from densechange.finetune.metrics import summary_line
from densechange.finetune.deepcl.model import build_change_model
from densechange.finetune.inference.scoring import ALL_NUISANCES, CLEAN, ROWS, score_split
from densechange.finetune.deepcl.task import ChangeTask

BEST_FILE = "best.safetensors"
FINAL_FILE = "final.safetensors"
BEST_KEY = "change_f1"
# Logged for every nuisance row of validation, under the row's prefix: pc_<key> (all together), pc_<nuisance>_<key>.
NUISANCE_KEYS = ("change_f1", "fpr_unchanged", "auroc", "ap", "flip_rate", "induced_false_alarms", "induced_misses")


def flatten_validation(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """One flat record: the clean metrics as they are, the nuisance rows' :data:`NUISANCE_KEYS` under the row's prefix."""
    out = dict(rows[CLEAN])
    for name, m in rows.items():
        if name != CLEAN:
            out.update({ROWS[name].prefix + k: m[k] for k in NUISANCE_KEYS})
    return out


def build_task(cfg: DictConfig) -> ChangeTask:
    """Detector, loss and pseudo-change augmentation from a finetuning config."""
    m = cfg.model
    model = build_change_model(m, cfg.data.in_chans, cfg.data.mean, cfg.data.std)
    hscl = HardSampleContrastiveLoss(m.hscl_margin, m.hscl_gamma) if m.metric_branch else None
    augment = PseudoChangeAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in to_dict(cfg.aug).items()})
    return ChangeTask(model, ChangeLoss(hscl, m.dice_weight, m.hscl_weight), augment)


class ValidationPictures:
    """Saves A | B | label | prediction of the first ``limit`` pairs it sees, for one epoch (and shows them on ``board``)."""

    def __init__(self, folder: Path, epoch: int, limit: int, board: RunBoard | None = None) -> None:
        self.folder, self.epoch, self.left, self.board = folder, epoch, limit, board or RunBoard()

    def __call__(self, sample: dict[str, Any], prediction: torch.Tensor) -> None:
        if self.left > 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            picture = ChangeDataset.plot(sample, prediction)
            picture.save(self.folder / f"epoch{self.epoch:03d}_{sample['name']}.png")
            self.board.image(f"val_images/{sample['name']}", picture)
            self.left -= 1


class Validator:
    """Per-epoch validation on full-size images: sharded over ranks, one summed confusion matrix.

    Called by the engine on every rank; rank 0 also saves the first few validation pictures and,
    through :meth:`save_best`, the best change model.
    """

    def __init__(self, dataset: Dataset, settings: ValConfig, ctx: RunContext, *, stride: int,
                 precision: str = "fp32") -> None:
        """Args:
            settings: the ``val`` section: how the pairs are scored (windows, checked against the network
                ``stride``; pseudo-change rows; nuisances and their seed, the same draws every epoch; loader
                workers) and the validation pictures saved per epoch (rank 0).
            ctx: the run: its process group, its folder (``val_images/``, ``best.safetensors``) and the
                resolved config stored in the best checkpoint.
            precision: the network's precision (the run's resolved ``trainer.precision``).
        """
        settings.window.check(stride)
        settings.rows()
        self.dataset, self.settings, self.dist, self.run_dir, self.config = dataset, settings, ctx.dist, ctx.dir, ctx.config
        self.board = ctx.board
        self.precision = precision
        self.epoch = -1

    def __call__(self, task: nn.Module, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        shown = self.settings.triptychs if self.dist.is_main else 0
        pictures = ValidationPictures(self.run_dir / "val_images", epoch, shown, self.board)
        rows = score_split(task.model, self.dataset, self.settings, dist=self.dist, precision=self.precision,
                           on_sample=pictures)
        metrics = flatten_validation(rows)
        if self.dist.is_main:
            line = f"{summary_line(metrics)} AUROC={metrics['auroc']:.4f}"
            if ALL_NUISANCES in rows:
                pc = ROWS[ALL_NUISANCES].prefix
                line += (f"; pseudo-change: flips={metrics[pc + 'flip_rate']:.4f} "
                         f"induced FA={metrics[pc + 'induced_false_alarms']:.4f} AUROC={metrics[pc + 'auroc']:.4f}")
            print(f"\nepoch {epoch} validation: {line}", flush=True)
        return metrics

    def save_best(self, task: nn.Module, metrics: dict[str, float]) -> None:
        save_change_model(self.run_dir / BEST_FILE, task.model, config=self.config,
                          extra={"epoch": self.epoch, "metrics": metrics, "best_key": BEST_KEY})


SPEC = training_spec(
    "densechange finetune", "DeepCL change-detection finetuning on a bi-temporal dataset.", FinetuneConfig, CHOICES,
    examples=(
        "densechange finetune --config configs/finetune/deepcl_resnet18.yaml data.root=/data/my_cd model.encoder=PATH",
        "torchrun --nproc_per_node=4 -m densechange.finetune --config configs/finetune/deepcl_resnet18.yaml data.root=/data/my_cd",
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    with training_session(cfg) as ctx:
        train_set = training_set(cfg.data, cfg.run.seed)
        check_bands(train_set, cfg.data.in_chans)
        d, val_set = cfg.data, None
        if d.val_split:
            val_set = evaluation_set(d.root, d.val_split, d.ignore_value, d.synthetic_val_pairs, d.synthetic_size,
                                     d.skip_incomplete, d.layout, chosen_bands(d))
        warning = overlap_warning(train_set, val_set) if val_set is not None else None
        if warning and ctx.is_main:
            warnings.warn(warning, stacklevel=1)
        seed_everything(derive_seed(cfg.run.seed, 0xDC1))  # same initial weights on every rank and every rerun
        task = build_task(cfg)
        validator = None
        if val_set is not None:
            validator = Validator(val_set, OmegaConf.to_object(cfg.val), ctx, stride=task.model.stride,
                                  precision=resolve_precision(cfg.trainer.precision, ctx.dist.device, warn=False))
        open_run_folder(cfg, ctx)
        if ctx.is_main:
            pairs = write_pairs_file(ctx.dir, train_set, cfg.data)
            print(f"training on {len(train_set)} pairs of {d.root} ({d.split}); their names are in {pairs}")
        task, loop = fit(task, train_set, cfg.trainer, ctx, evaluate=validator, best_key=BEST_KEY,
                         on_best=validator.save_best if validator is not None else None, metrics_group="val")
        if ctx.is_main:
            save_change_model(ctx.dir / FINAL_FILE, task.model, config=ctx.config,
                              extra={"epoch": loop.epoch, "steps": loop.step})
            if loop.best_metric is not None:
                print(f"best {BEST_KEY}={loop.best_metric:.4f} at epoch {loop.best_epoch} in {ctx.dir / BEST_FILE}")
            print(f"final model in {ctx.dir / FINAL_FILE}")
    return 0


def cli() -> None:
    run_cli(main)
