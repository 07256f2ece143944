"""How the archive plan scales with the number of pairs: seconds per pair for N and 4N small tiles.

    PYTHONPATH=src python bench/predict_plan.py [--pairs 1000]

Rank 0 plans before any process predicts (the others wait at the broadcast), so its cost per pair
must stay flat as an archive grows: a step that scans the output folder once per pair would make it
quadratic. The pairs are 64² GeoTIFFs listed in a CSV; the plan reads each header, checks the
manifest, looks for a killed run's temporaries and deals. The last line is the ratio of the cost per
pair at 4N to that at N (1.0: linear).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.datasets.io.images import write_mask  # noqa: E402
from densechange.engine.cli import parse_command  # noqa: E402
from densechange.engine.precision import cpu_model  # noqa: E402
from densechange.finetune import predict  # noqa: E402
from densechange.finetune.archive.plan import make_plan  # noqa: E402
from densechange.finetune.checkpoint import save_change_model  # noqa: E402
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel  # noqa: E402
from densechange.models import Encoder  # noqa: E402


def plan_seconds(root: Path, pairs: int) -> float:
    """Seconds rank 0 spends planning ``pairs`` pairs of one tile (two files per date folder)."""
    tile = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    folder = root / f"n{pairs}"
    for date in ("t1", "t2"):
        (folder / date).mkdir(parents=True)
    lines = []
    for i in range(pairs):
        for date in ("t1", "t2"):
            write_mask(folder / date / f"p{i:07d}.tif", tile)
        lines.append(f"t1/p{i:07d}.tif,t2/p{i:07d}.tif")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    cfg = parse_command(predict.SPEC, [f"checkpoint={root / 'model.safetensors'}", f"pairs={folder / 'pairs.csv'}",
                                       f"out={folder / 'out'}", "device=cpu", "precision=fp32"])
    predictor = predict.load_predictor(cfg, torch.device("cpu"))
    (folder / "out").mkdir()
    start = time.perf_counter()
    plan = make_plan(cfg, predictor, 64)
    seconds = time.perf_counter() - start
    assert len(plan.units) == pairs
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000, help="N: the plan is timed for N and 4N pairs")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="predict_plan_"))
    torch.manual_seed(0)
    save_change_model(root / "model.safetensors", ChangeModel(Encoder("test_resnet", in_chans=1, neck_channels=16),
                                                              mean=[0.5], std=[0.5],
                                                              heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)))
    print(f"CPU: {cpu_model()}; plan for 64 ranks")
    per = {}
    for n in (opts.pairs, 4 * opts.pairs):
        seconds = plan_seconds(root, n)
        per[n] = seconds / n
        print(f"{n} pairs: plan {seconds:.2f} s, {per[n] * 1e3:.3f} ms per pair")
    print(f"cost per pair at {4 * opts.pairs} pairs / at {opts.pairs}: {per[4 * opts.pairs] / per[opts.pairs]:.2f}")


if __name__ == "__main__":
    main()
