"""Pretrain an encoder with SaDL on image-mask pairs.

    densechange pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria
    torchrun --nproc_per_node=8 -m densechange.pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria

The run folder gets ``config.yaml``, ``log.jsonl`` (per step), ``metrics.jsonl`` (per epoch: the
collapse monitor ``proj_std`` and, with ``probe.every``/``probe.data``, the probe scores), the resume
checkpoint ``last.safetensors`` and, at the end, ``encoder.safetensors`` (backbone + FPN neck) with its
``MODEL_CARD.md`` (:mod:`densechange.checkpoints.card`). TensorBoard event files mirror both logs
(``train/``, ``epoch/``), with the pseudo-masks of a few images at each refresh, the config as
hyper-parameters and the model card as text (``tensorboard --logdir RUN``; ``run.tensorboard=false``
switches them off).

Without masks, ``data.masks=pseudo`` trains on k-means pseudo-masks of an image-only folder
(``ROOT/A/``); their generations are kept as ``pseudo_masks_g<N>/`` (tiled GeoTIFFs, read by window)::

    densechange pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/tiles data.masks=pseudo \
        pseudo.clusters=6 pseudo.refresh_every=20 probe.every=10 probe.data=/data/inria_val
"""
from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from densechange.datasets.io.sources import allow_network_sources
from densechange.checkpoints import build_normalised_encoder, save_encoder
from densechange.datasets import ChangeOptions, ImageMaskOptions
from densechange.checkpoints.card import write_card
from densechange.engine.change_sets import check_bands
from densechange.engine.cli import parse_command, run_cli
from densechange.engine.config import to_dict
from densechange.engine.errors import ConfigError
from densechange.engine.loop import RunContext, fit, resolve_resume
from densechange.engine.precision import choose_precision, device_name
from densechange.engine.seeding import derive_seed, seed_everything
from densechange.engine.session import open_run_folder, training_session, training_spec

from densechange.pretrain.config import CHOICES, PretrainConfig
from densechange.pretrain.data import build_change_probe_pairs, build_image_source, build_labelled_dataset
from densechange.pretrain.epoch_end import CollapseMonitor, EpochEnd
from densechange.pretrain.probe.epoch import EpochChangeProbe, EpochProbe
from densechange.pretrain.probe.score import probe_settings
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.pretrain.pseudo.refresh import PseudoRefresher, resume_epoch
from densechange.pretrain.sadl.heads import HeadSpec
from densechange.pretrain.sadl.losses import SaDLLoss
from densechange.pretrain.sadl.model import SaDL
from densechange.pretrain.sadl.sampling import PointSpec
from densechange.pretrain.sadl.views import ViewAugment

ENCODER_FILE = "encoder.safetensors"


def build_dataset(cfg: DictConfig, seed: int) -> Dataset:
    """The training set: image-mask pairs, or images with pseudo-masks (``data.masks=pseudo``).

    Pseudo-mask datasets start without masks; :class:`PseudoRefresher` installs them.
    """
    data = cfg.data
    allow_network_sources(data.allow_network_sources)
    if data.masks == "pseudo":
        source = build_image_source(data.root, data.split, seed=seed, synthetic_images=data.synthetic_images,
                                    synthetic_size=data.tile_size, layout=data.layout)
        return PseudoMaskDataset(source, cfg.pseudo.clusters, crop_size=data.tile_size, seed=seed,
                                 crops_per_epoch=data.crops_per_epoch)
    options = ImageMaskOptions(crop_size=data.tile_size, crops_per_epoch=data.crops_per_epoch, seed=seed,
                               ignore_value=data.ignore_value, skip_incomplete=data.skip_incomplete,
                               mask_mode=data.mask_mode, num_classes=data.num_classes)
    return build_labelled_dataset(data.root, data.split, options, synthetic_images=data.synthetic_images,
                                  synthetic_size=data.tile_size, synthetic_classes=data.synthetic_classes,
                                  layout=data.layout)


def build_task(cfg: DictConfig, num_classes: int) -> tuple[SaDL, list[float], list[float]]:
    m = cfg.model
    encoder, mean, std = build_normalised_encoder(m.init, in_chans=cfg.data.in_chans, mean=cfg.data.mean, std=cfg.data.std,
                                                  backbone=m.backbone, neck_channels=m.neck_channels, registry=m.registry,
                                                  backbone_args=m.backbone_args)
    task = SaDL(
        encoder,
        mean=mean,
        std=std,
        points=PointSpec(num_classes, m.points_per_class, m.sampling),
        heads=HeadSpec(m.proj_hidden, m.proj_dim, m.pred_hidden, m.dropout),
        synthetic_view=m.synthetic_view,
        augment=ViewAugment(**{k: (tuple(v) if not isinstance(v, (int, float)) else v) for k, v in to_dict(cfg.aug).items()}),
        loss=SaDLLoss(m.w_cons, m.w_push, m.w_syn),
    )
    return task, mean, std


def build_epoch_probe(cfg: DictConfig, mean: list[float], std: list[float],
                      ctx: RunContext) -> EpochProbe | EpochChangeProbe | None:
    """The per-epoch probe of ``probe.data`` when ``probe.every`` asks for one (``probe.task``: which probe)."""
    p = cfg.probe
    if not p.every:
        return None
    if p.every < 0 or not p.data:
        raise ConfigError(f"probe.every={p.every} needs a positive number of epochs and probe.data set to a labelled "
                          "image-mask folder (probe.task=change: a change dataset folder), or 'synthetic'; set "
                          "probe.every=0 to switch the probe off.")
    seed = derive_seed(ctx.seed, 0x9B0) % 2**31
    if p.task == "change":
        options = ChangeOptions(crop_size=p.tile_size, seed=seed, ignore_value=p.ignore_value)
        train, test = build_change_probe_pairs(
            p.data, p.split, p.test_split, options, keys=("probe.split", "probe.test_split"),
            synthetic_pairs=p.max_images or 16, synthetic_size=cfg.data.tile_size, max_pairs=p.max_images)
        check_bands(train, cfg.data.in_chans)
        return EpochChangeProbe(train, test, every=p.every, settings=probe_settings(p), mean=mean, std=std, ctx=ctx)
    options = ImageMaskOptions(crop_size=p.tile_size, seed=seed, ignore_value=p.ignore_value, mask_mode=p.mask_mode,
                               num_classes=p.num_classes, one_crop_per_image=True)
    held_out = build_labelled_dataset(p.data, p.split, options, synthetic_images=p.max_images or 16,
                                      synthetic_size=cfg.data.tile_size, max_images=p.max_images)
    return EpochProbe(held_out, num_classes=held_out.num_classes, every=p.every, settings=probe_settings(p), mean=mean,
                      std=std, ctx=ctx)


def build_refresher(cfg: DictConfig, dataset: PseudoMaskDataset, mean: list[float], std: list[float], ctx: RunContext) -> PseudoRefresher:
    """The pseudo-masks' refresher; building the ``pseudo`` settings checks them."""
    settings: PseudoConfig = OmegaConf.to_object(cfg.pseudo)  # type: ignore[assignment]
    return PseudoRefresher(dataset, settings, ctx, epochs=cfg.trainer.epochs, mean=mean, std=std)


SPEC = training_spec(
    "densechange pretrain", "SaDL dense contrastive pretraining of an encoder on image-mask pairs.", PretrainConfig, CHOICES,
    examples=(
        "densechange pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria",
        "torchrun --nproc_per_node=8 -m densechange.pretrain --config configs/pretrain/sadl_resnet18.yaml data.root=/data/inria",
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    with training_session(cfg) as ctx:
        dataset = build_dataset(cfg, cfg.run.seed)
        seed_everything(derive_seed(cfg.run.seed, 0x1717))  # same initial weights on every rank and every rerun
        task, mean, std = build_task(cfg, dataset.num_classes)
        probe = build_epoch_probe(cfg, mean, std, ctx)
        refresher = build_refresher(cfg, dataset, mean, std, ctx) if cfg.data.masks == "pseudo" else None
        open_run_folder(cfg, ctx)
        if refresher is not None:
            refresher.start(resume_epoch(resolve_resume(cfg.trainer.resume, ctx.dir)), task.encoder.to(ctx.dist.device))
        monitor = CollapseMonitor(task, cfg.model.proj_dim, cfg.probe.collapse_warn)
        epoch_end = EpochEnd(monitor, probe, refresher, is_main=ctx.is_main)
        task, loop = fit(task, dataset, cfg.trainer, ctx, evaluate=epoch_end)
        monitor.close()
        if ctx.is_main:
            out, t = ctx.dir / ENCODER_FILE, cfg.trainer
            extra = {"method": "sadl", "masks": cfg.data.masks, "steps": loop.step, "epochs": loop.epoch,
                     "images_seen": loop.step * t.batch_size * t.accumulate * ctx.dist.world_size,
                     "data": data_summary(dataset, cfg, ctx.config),
                     "hardware": {"device": device_name(ctx.dist.device), "processes": ctx.dist.world_size,
                                  "precision": choose_precision(t.precision, ctx.dist.device).precision}}
            save_encoder(out, task.encoder, mean=mean, std=std, config=ctx.config, extra={**extra, **last_scores(loop.history)})
            card = write_card(out)
            if ctx.board.moved_on:
                ctx.board.text("model_card", card.read_text())
            print(f"encoder written to {out}, its model card to {card}")
    return 0


def data_summary(dataset: Dataset, cfg: DictConfig, recorded: dict) -> dict:
    """What the encoder was trained on, for its metadata and model card (the folder as the config records it)."""
    return {"root": str(recorded["data"]["root"]), "images": len(dataset.names), "crops_per_epoch": len(dataset),
            "bands": int(cfg.data.in_chans), "classes": int(dataset.num_classes), "masks": str(cfg.data.masks)}


def last_scores(history: list[dict]) -> dict:
    """The newest collapse and probe figures of the run, for the encoder's metadata."""
    keep = ("proj_std", "probe_knn_miou", "probe_kmeans_nmi", "probe_change_f1", "probe_change_auroc")
    return {k: record[k] for record in history for k in keep if k in record}


def cli() -> None:
    run_cli(main)
