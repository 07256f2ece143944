"""Pretrain an encoder with SaDL on image-mask pairs.

    python -m pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria
    torchrun --nproc_per_node=8 -m pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria

The run folder gets ``config.yaml``, ``log.jsonl``, ``metrics.jsonl``, the resume checkpoint
``last.safetensors`` and, at the end, ``encoder.safetensors`` (backbone + FPN neck).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig
from torch.utils.data import Dataset

from checkpoints import build_encoder, save_encoder
from datasets import ImageMaskDataset, SyntheticImageMaskDataset
from pretrain.engine.cli import parse_args, run_cli
from pretrain.engine.config import load_config, save_config, to_dict
from pretrain.engine.distributed import init_distributed, shutdown
from pretrain.engine.loop import RunContext, fit
from pretrain.engine.seeding import derive_seed, seed_everything

from .config import CHOICES, PretrainConfig
from .model import SaDL, ViewAugment
from .losses import SaDLLoss

ENCODER_FILE = "encoder.safetensors"


def build_dataset(data: DictConfig, seed: int) -> Dataset:
    """The image-mask dataset that ``data.root`` names (``synthetic`` for the embedded one)."""
    if data.root == "synthetic":
        return SyntheticImageMaskDataset(num_images=data.synthetic_images, size=data.tile_size, seed=seed, classes=data.synthetic_classes)
    return ImageMaskDataset(
        data.root,
        data.split,
        crop_size=data.tile_size,
        mask_mode=data.mask_mode,
        ignore_value=data.ignore_value,
        num_classes=data.num_classes,
        seed=seed,
    )


def normalisation(data: DictConfig, from_weights: dict | None) -> tuple[list[float], list[float]]:
    """Config values win; else the init weights' statistics; else SaDL's 0.5 / 0.5."""
    c = data.in_chans
    mean = list(data.mean) if data.mean is not None else (from_weights or {}).get("mean") or [0.5] * c
    std = list(data.std) if data.std is not None else (from_weights or {}).get("std") or [0.5] * c
    if len(mean) != c or len(std) != c:
        raise ValueError(f"data.mean / data.std have {len(mean)} / {len(std)} values but data.in_chans={c}; give one value per band.")
    return mean, std


def build_task(cfg: DictConfig, num_classes: int) -> tuple[SaDL, list[float], list[float]]:
    m = cfg.model
    encoder, stats = build_encoder(m.init, backbone=m.backbone, in_chans=cfg.data.in_chans, neck_channels=m.neck_channels)
    mean, std = normalisation(cfg.data, stats)
    task = SaDL(
        encoder,
        mean=mean,
        std=std,
        num_classes=num_classes,
        points_per_class=m.points_per_class,
        proj_hidden=m.proj_hidden,
        proj_dim=m.proj_dim,
        pred_hidden=m.pred_hidden,
        dropout=m.dropout,
        sampling=m.sampling,
        synthetic_view=m.synthetic_view,
        augment=ViewAugment(**{k: (tuple(v) if not isinstance(v, (int, float)) else v) for k, v in to_dict(cfg.aug).items()}),
        loss=SaDLLoss(m.w_cons, m.w_push, m.w_syn),
    )
    return task, mean, std


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("python -m pretrain", "SaDL dense contrastive pretraining.", argv)
    cfg = load_config(PretrainConfig, args.config, args.overrides, choices=CHOICES, required=("data.root",))
    dist = init_distributed(cfg.trainer.device)
    try:
        run_dir = Path(cfg.run.dir)
        dataset = build_dataset(cfg.data, cfg.run.seed)
        seed_everything(derive_seed(cfg.run.seed, 0x1717))  # same initial weights on every rank and every rerun
        task, mean, std = build_task(cfg, dataset.num_classes)
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        ctx = RunContext(dir=run_dir, dist=dist, seed=cfg.run.seed, config=to_dict(cfg))
        task, loop = fit(task, dataset, cfg.trainer, ctx)
        if dist.is_main:
            out = run_dir / ENCODER_FILE
            save_encoder(out, task.encoder, mean=mean, std=std, config=ctx.config, extra={"method": "sadl", "steps": loop.step, "epochs": loop.epoch})
            print(f"encoder written to {out}")
    finally:
        shutdown()
    return 0


def cli() -> None:
    run_cli(main)
