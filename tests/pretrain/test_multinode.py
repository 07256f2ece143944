"""Many nodes and faults survived, on one machine with gloo (the contract is the same with nccl).

- Two torchrun "nodes" (``--nnodes=2``, one process each, rendezvous on 127.0.0.1) train to the
  weights of one node with two processes (the shared ``one_node_run``, conftest.py); only global
  rank 0 writes the run files; the initial weights are downloaded once per node; a two-node run
  resumes where it stopped.
- A worker killed with SIGKILL in the middle of a run, by this test watching ``log.jsonl`` from
  outside, is restarted by torchrun (``--max-restarts=1``); ``trainer.resume=auto`` continues from
  the last checkpoint and the final weights equal those of an uninterrupted run, bit for bit.
"""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import load_file
from densechange.engine.runlog import read_jsonl
from tests.torchrun import worker_pids

WEIGHTS = "served-encoder.safetensors"
STEPS = list(range(1, 9))  # 16 images / (2 processes x batch 2) = 4 steps per epoch; 2 epochs


def encoder(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "encoder.safetensors")[0]


def run_writes(probe: Path, rank: int, run_dir: Path) -> list[str]:
    return [w for w in json.loads((probe / f"rank{rank}.json").read_text())["writes"] if str(run_dir) in w]


@pytest.mark.slow
def test_two_nodes_train_like_one_node_write_once_download_per_node_and_resume(tmp_path, launcher, one_node_run):
    weights = launcher
    run_dir, caches = tmp_path / "run", [tmp_path / "cache_node0", tmp_path / "cache_node1"]
    before = weights.downloads()
    first = weights.two_nodes(run_dir, caches, tmp_path / "probe_a", "trainer.max_steps=5")  # stops inside epoch 1
    assert all(code == 0 for code, _, _ in first), first[0][2][-3000:] + first[1][2][-3000:]
    assert weights.downloads() - before == 2  # once per node
    assert all(any(cache.rglob(WEIGHTS)) for cache in caches)
    second = weights.two_nodes(run_dir, caches, tmp_path / "probe_b", "trainer.resume=auto")
    assert all(code == 0 for code, _, _ in second), second[0][2][-3000:] + second[1][2][-3000:]
    assert weights.downloads() - before == 2  # the resumed nodes use their caches
    assert "resumed from" in second[0][1] and "at step 5" in second[0][1]

    # Only global rank 0 writes into the run folder, in both launches.
    for probe in (tmp_path / "probe_a", tmp_path / "probe_b"):
        assert run_writes(probe, 0, run_dir) and not run_writes(probe, 1, run_dir)

    # The same training as one node with two processes: step by step, then the final weights.
    one, two = read_jsonl(one_node_run.run / "log.jsonl"), read_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in two] == [r["step"] for r in one] == STEPS
    assert all(b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6) for a, b in zip(one, two))
    ta, tb = encoder(one_node_run.run), encoder(run_dir)
    assert ta.keys() == tb.keys()
    assert max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta) <= 1e-5


def logged_steps(log: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(log, torn_tail=True)] if log.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(tmp_path, launcher, one_node_run):
    run_dir = tmp_path / "run"
    proc = launcher.one_node(run_dir, tmp_path / "cache", tmp_path / "probe", "trainer.resume=auto",
                             "trainer.save_every=1", restarts=1)
    deadline, killed = time.monotonic() + 300, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if 2 in logged_steps(run_dir / "log.jsonl"):  # mid-run: 2 of 8 steps done
            workers = worker_pids(proc.pid)
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)  # rank 0, the process that writes the run files
        time.sleep(0.01)
    assert killed is not None, "the run ended before the test could kill a worker"
    out = launcher.finished(proc)
    assert "resumed from" in out  # torchrun restarted the group and the run continued from last.safetensors
    assert [r["step"] for r in read_jsonl(run_dir / "log.jsonl")] == STEPS
    ta, tb = encoder(one_node_run.run), encoder(run_dir)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)  # bit-exact
