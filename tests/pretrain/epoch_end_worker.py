"""The epoch-end work of a pretraining run, alone: one probe, then pseudo-masks and their refresh.

Used by test_epoch_end_ddp.py, once as one plain process and once under ``torchrun`` with two
gloo processes. Both build the same seeded encoder and run the run's own objects
(:class:`EpochProbe`, :class:`PseudoRefresher`) on small synthetic sets, with sample limits that
bind. Rank 0 writes the probe scores to ``<OUT_DIR>/scores.json``; the pseudo-masks go to
``<OUT_DIR>/run/`` as in a run.
"""
import json
import os
import sys
from pathlib import Path

import torch

from densechange.models import Encoder
from densechange.datasets import SyntheticImageMaskDataset
from densechange.engine.distributed import init_distributed, shutdown
from densechange.engine.loop import RunContext
from densechange.pretrain.data import SyntheticImages
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.epoch import EpochProbe
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.pretrain.pseudo.refresh import PseudoRefresher


def main() -> int:
    out = Path(os.environ["OUT_DIR"])
    dist = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        encoder = Encoder("test_resnet", neck_channels=16).eval()
        mean, std = [0.5] * 3, [0.5] * 3
        held_out = SyntheticImageMaskDataset(7, size=64, seed=3)  # 7 images: the shards are uneven
        settings = ProbeConfig(pixels_per_image=40, max_pixels=150, k=5, folds=3, batch_size=2)
        ctx = RunContext(out / "run", dist, seed=0, config={})
        probe = EpochProbe(held_out, num_classes=2, every=1, settings=settings, mean=mean, std=std, ctx=ctx)
        scores = probe(encoder)

        train = PseudoMaskDataset(SyntheticImages(9, 64, seed=5), 3, crop_size=64, seed=0)
        pseudo = PseudoConfig(clusters=3, refresh_every=1, window=5, pixels_per_image=64, max_pixels=300, iters=10,
                              batch_size=2)
        refresher = PseudoRefresher(train, pseudo, ctx, epochs=3, mean=mean, std=std)
        refresher.start(0, encoder)  # generation 0: colour and texture
        refreshed = refresher.after_epoch(0, encoder)  # generation 1: the encoder's features
        if dist.is_main:
            (out / "scores.json").write_text(json.dumps({"probe": scores, "refresh": refreshed}))
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
