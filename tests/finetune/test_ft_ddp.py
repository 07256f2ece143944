"""Two CPU processes under torchrun (gloo): one run folder, one best model, validation summed over ranks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densechange.engine.runlog import read_jsonl
from densechange.finetune import evaluate
from densechange.finetune.checkpoint import load_change_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_finetune(tiny_overrides, tiny_window, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "densechange.finetune",
           *tiny_overrides, "model.backbone=mobilenetv3_small_050", "trainer.batch_size=2", f"run.dir={run_dir}"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("best change_f1=") == 1  # rank 0 alone reports and writes

    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(r["pixels"] == 4 * 64 * 64 for r in records)  # both ranks' halves of the validation set
    log = read_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # 8 pairs / (2 ranks x 2) = 2 steps per epoch
    # rank 0 scores validation pairs 0 and 2 and draws the first of them
    assert sorted(p.name for p in (run_dir / "val_images").iterdir()) == [
        f"epoch{e:03d}_synthetic_{i:05d}.png" for e in (0, 1) for i in (0, 2)
    ]
    _, meta = load_change_model(run_dir / "best.safetensors")

    # single-process scoring of the best model reproduces the sum over the two ranks
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--checkpoint", str(run_dir / "best.safetensors"), "data.root=synthetic", "data.split=val",
                          "data.synthetic_pairs=4", "data.synthetic_size=64", *tiny_window, "precision=fp32",
                          "--out", str(out)]) == 0
    best = next(r for r in records if r["epoch"] == meta["epoch"])
    clean = json.loads(out.read_text())["clean"]
    bad = {k: (clean[k], best[k]) for k in clean if clean[k] != pytest.approx(best[k], abs=1e-12)}
    assert not bad, bad
