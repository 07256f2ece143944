"""ConfusionMatrix.all_reduce sums over processes once: a second call gives the same sum, the local counts stay."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from densechange.finetune.metrics import ConfusionMatrix

REPO = Path(__file__).resolve().parents[2]

# One process of a gloo group over a FileStore: counts of its own, then two reductions, printed as JSON.
WORKER = """
import json, sys
import torch, torch.distributed as dist
from densechange.finetune.metrics import ConfusionMatrix
rank, world, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
try:
    cm = ConfusionMatrix()
    cm.update(torch.tensor([0, 1, 1] + [1] * rank), torch.tensor([0, 1, 0] + [1] * rank))
    first, second = cm.all_reduce(), cm.all_reduce()
    print(json.dumps({"local": cm.matrix.tolist(), "first": first.matrix.tolist(), "second": second.matrix.tolist()}))
finally:
    dist.destroy_process_group()
"""


def test_two_processes_reduce_twice_to_the_same_sum(tmp_path):
    store, world = str(tmp_path / "store"), 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(world), store], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(world)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # rank 0 holds [[1, 1], [0, 1]], rank 1 one more changed pixel: [[1, 1], [0, 2]]
    assert results[0]["local"] == [[1, 1], [0, 1]] and results[1]["local"] == [[1, 1], [0, 2]]
    for r in results:
        assert r["first"] == r["second"] == [[2, 2], [0, 3]]


def test_one_process_group_gives_a_copy_and_keeps_the_counts(tmp_path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        cm = ConfusionMatrix()
        cm.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
        first = cm.all_reduce()
        first.matrix += 100  # the reduced copy is its own tensor
        second = cm.all_reduce()
        assert cm.matrix.tolist() == second.matrix.tolist() == [[1, 1], [0, 1]]
        assert first is not cm and second is not cm
    finally:
        dist.destroy_process_group()
