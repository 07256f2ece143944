"""One process against two under torchrun: a folder of 8 scene pairs, and one large scene split into bands.

    PYTHONPATH=src python bench/predict_ranks.py [--side 1024] [--large 3840] [--band-rows 1920]

One thread per process (OMP_NUM_THREADS=1), a small random change model (timm's test ResNet), fp32 on
the CPU. Reports each launch's seconds (start-up included) and its work span (from predict.jsonl: the
longest rank's busy plus idle seconds, start-up left out) with the throughput over it, each rank's
idle share, the manifest's cost (hashing the outputs, appending the records) against the work,
and, on the last line, the speed-up of two processes over one on the folder's work span.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.checkpoints.download import sha256_file  # noqa: E402
from densechange.datasets.io.images import write_mask  # noqa: E402
from densechange.engine.precision import cpu_model  # noqa: E402
from densechange.engine.runlog import append_locked, read_jsonl  # noqa: E402
from densechange.finetune.checkpoint import save_change_model  # noqa: E402
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel  # noqa: E402
from densechange.models import Encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMON = ["window.size=256", "window.overlap=64", "window.margin=8", "precision=fp32", "progress=false"]


def launch(nproc: int, args: list[str]) -> float:
    """Seconds of a torchrun launch of ``densechange predict`` with ``nproc`` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "--monitor-interval=0.2", "-m", "densechange.finetune.predict", *args], cwd=REPO, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - start


def shares(out: Path) -> tuple[float, str]:
    """The run's work span (seconds) and each rank's idle share, from its predict.jsonl."""
    log = read_jsonl(out / "predict.jsonl")
    span = max(r["busy_s"] + r["idle_s"] for r in log)
    return span, ", ".join(f"{r['idle_s'] / max(span, 1e-9) * 100:.0f}%" for r in sorted(log, key=lambda r: r["rank"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=1024, help="side of each of the 8 scene pairs")
    parser.add_argument("--large", type=int, default=3840, help="side of the large scene split into bands")
    parser.add_argument("--band-rows", type=int, default=1920, help="split.band_rows of the two-process run")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: each process on its local rank's GPU (nccl)")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="predict_ranks_"))
    torch.manual_seed(0)
    model = ChangeModel(Encoder("test_resnet", in_chans=1, neck_channels=16), mean=[0.5], std=[0.5],
                        heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()
    save_change_model(root / "model.safetensors", model)
    rng = np.random.default_rng(0)
    for i in range(8):
        for date in ("t1", "t2"):
            write_mask(root / date / f"s{i}.tif", (rng.random((opts.side, opts.side)) * 255).astype(np.uint8))
    for date in ("l1", "l2"):
        write_mask(root / date / "large.tif", (rng.random((opts.large, opts.large)) * 255).astype(np.uint8))
    ckpt = f"checkpoint={root / 'model.safetensors'}"
    folder_px, large_px = 8 * opts.side**2, opts.large**2
    where = cpu_model() if opts.device == "cpu" else torch.cuda.get_device_name(0)
    print(f"device: {where}; torch {torch.__version__}; one thread per process")
    spans = {}
    for n in (1, 2):
        out = root / f"folder{n}"
        took = launch(n, [ckpt, f"a={root / 't1'}", f"b={root / 't2'}", f"out={out}", *COMMON, f"device={opts.device}"])
        spans[n], idle = shares(out)
        print(f"8 pairs of {opts.side}², {n} process{'es' if n > 1 else ''}: launch {took:.1f} s, work {spans[n]:.1f} s "
              f"({folder_px / 1e6 / spans[n]:.2f} Mpx/s), idle share per rank {idle}")
    outputs = sorted((root / "folder1").glob("*.tif"))
    start = time.perf_counter()
    for path in outputs:
        append_locked(root / "overhead.jsonl", {"path": str(path), "sha256": sha256_file(path)})
    manifest = time.perf_counter() - start
    print(f"manifest: hashing the 8 outputs and appending their records {manifest * 1e3:.1f} ms, "
          f"{manifest / spans[1] * 100:.2f}% of the one-process work")
    for n in (1, 2):
        out = root / f"large{n}"
        split = ["split.min_pixels=1000000", f"split.band_rows={opts.band_rows}"] if n > 1 else ["split.min_pixels=null"]
        took = launch(n, [ckpt, f"a={root / 'l1' / 'large.tif'}", f"b={root / 'l2' / 'large.tif'}",
                          f"out={out / 'large.tif'}", *split, *COMMON, f"device={opts.device}"])
        span, idle = shares(out)
        bands = sum(r["bands"] for r in read_jsonl(out / "predict.jsonl"))
        print(f"one {opts.large}² scene, {n} process{'es' if n > 1 else ''}{f' in {bands} bands' if n > 1 else ''}: "
              f"launch {took:.1f} s, work {span:.1f} s ({large_px / 1e6 / span:.2f} Mpx/s), idle share per rank {idle}")
    print(f"two processes on 8 pairs: {spans[1] / spans[2]:.2f}x the throughput of one (work span)")


if __name__ == "__main__":
    main()
