"""Two processes under torchrun with gloo on CPU: real DDP, checked rank by rank."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densechange.checkpoints import load_encoder

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_ddp(tmp_path):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    env = {**os.environ, "PROBE_DIR": str(probe), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(Path(__file__).with_name("ddp_probe.py")),
        "--config", "configs/pretrain/demo.yaml",
        "data.synthetic_images=8", "data.tile_size=64", "aug.size=64",
        "model.proj_hidden=64", "model.proj_dim=32", "model.pred_hidden=16",
        "trainer.batch_size=2", "trainer.epochs=2", "trainer.device=cpu", f"run.dir={run_dir}",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0["steps"]) == len(r1["steps"]) == 4  # 8 images / (2 ranks x 2) = 2 steps x 2 epochs
    for epoch in range(2):
        names0 = {n for s in r0["steps"][2 * epoch : 2 * epoch + 2] for n in s["names"]}
        names1 = {n for s in r1["steps"][2 * epoch : 2 * epoch + 2] for n in s["names"]}
        assert len(names0) == len(names1) == 4 and not names0 & names1
    for s0, s1 in zip(r0["steps"], r1["steps"]):
        assert s0["gen"] != s1["gen"]  # different augmentation draws
        assert s0["weights"] == s1["weights"]  # identical weights after every step
    run_files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "log.jsonl", "last.safetensors", "encoder.safetensors"} <= run_files
    assert not [w for w in r1["writes"] if str(run_dir) in w]
    assert [w for w in r0["writes"] if str(run_dir) in w]
    load_encoder(run_dir / "encoder.safetensors")
