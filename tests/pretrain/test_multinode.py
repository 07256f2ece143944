"""Many nodes and faults survived, on one machine with gloo (the contract is the same with nccl).

- Two torchrun "nodes" (``--nnodes=2``, one process each, rendezvous on 127.0.0.1) train to the
  weights of one node with two processes; only global rank 0 writes the run files; the initial
  weights are downloaded once per node; a two-node run resumes where it stopped.
- A worker killed with SIGKILL in the middle of a run, by this test watching ``log.jsonl`` from
  outside, is restarted by torchrun (``--max-restarts=1``); ``trainer.resume=auto`` continues from
  the last checkpoint and the final weights equal those of an uninterrupted run, bit for bit.
"""
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import Encoder, load_file, save_encoder
from densechange.engine.runlog import read_jsonl

REPO = Path(__file__).resolve().parents[2]
RECORDER = Path(__file__).with_name("ddp_probe.py")  # densechange pretrain, recording what each rank writes
# 16 images / (2 processes x batch 2) = 4 steps per epoch; 2 epochs = 8 steps.
ARGS = ["--config", "configs/pretrain/demo.yaml", "data.synthetic_images=16", "data.tile_size=64", "aug.size=64",
        "model.backbone=test_resnet", "model.neck_channels=32", "model.proj_hidden=64", "model.proj_dim=32",
        "model.pred_hidden=16", "trainer.batch_size=2", "trainer.epochs=2", "trainer.device=cpu", "model.init=served"]
WEIGHTS = "served-encoder.safetensors"
STEPS = list(range(1, 9))


class Weights:
    """A weights file behind a local HTTP server that counts the downloads, and its registry file."""

    def __init__(self, root: Path) -> None:
        torch.manual_seed(7)
        root.mkdir()
        save_encoder(root / WEIGHTS, Encoder("test_resnet", neck_channels=32), mean=[0.5] * 3, std=[0.5] * 3)
        self.gets: list[str] = []
        gets = self.gets

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                gets.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        entry = {"name": "served", "url": f"http://127.0.0.1:{self.server.server_port}/{WEIGHTS}",
                 "sha256": hashlib.sha256((root / WEIGHTS).read_bytes()).hexdigest(), "backbone": "test_resnet",
                 "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3, "importer": "densechange"}
        self.registry = root / "registry.json"
        self.registry.write_text(json.dumps({"version": 1, "entries": [entry]}))

    def downloads(self) -> int:
        return sum(1 for path in self.gets if path.endswith(WEIGHTS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(cache: Path, probe: Path, weights: Weights) -> dict[str, str]:
    probe.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "DENSECHANGE_CACHE": str(cache),
            "DENSECHANGE_REGISTRY": str(weights.registry), "PROBE_DIR": str(probe)}


def one_node(run_dir: Path, cache: Path, probe: Path, weights: Weights, *extra: str, restarts: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           f"--max-restarts={restarts}", str(RECORDER), *ARGS, f"run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env_for(cache, probe, weights), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def two_nodes(run_dir: Path, caches: list[Path], probe: Path, weights: Weights, *extra: str) -> list[tuple[int, str, str]]:
    """Node ranks 0 and 1, one process each, meeting at 127.0.0.1; each node has its own weights cache."""
    port = free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1",
               "--master_addr=127.0.0.1", f"--master_port={port}", str(RECORDER), *ARGS, f"run.dir={run_dir}", *extra]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env_for(caches[node], probe, weights), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        results.append((p.returncode, out, err))
    return results


def finished(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return out


def encoder(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "encoder.safetensors")[0]


def run_writes(probe: Path, rank: int, run_dir: Path) -> list[str]:
    return [w for w in json.loads((probe / f"rank{rank}.json").read_text())["writes"] if str(run_dir) in w]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Weights:
    served = Weights(tmp_path_factory.mktemp("served") / "files")
    yield served
    served.server.shutdown()


@pytest.fixture(scope="module")
def one_node_run(tmp_path_factory, weights) -> Path:
    """The reference: one node, two processes, uninterrupted."""
    root = tmp_path_factory.mktemp("one_node")
    before = weights.downloads()
    finished(one_node(root / "run", root / "cache", root / "probe", weights))
    assert weights.downloads() - before == 1  # two processes on one node: one download
    return root / "run"


@pytest.mark.slow
def test_two_nodes_train_like_one_node_write_once_download_per_node_and_resume(tmp_path, weights, one_node_run):
    run_dir, caches = tmp_path / "run", [tmp_path / "cache_node0", tmp_path / "cache_node1"]
    before = weights.downloads()
    first = two_nodes(run_dir, caches, tmp_path / "probe_a", weights, "trainer.max_steps=5")  # stops inside epoch 1
    assert all(code == 0 for code, _, _ in first), first[0][2][-3000:] + first[1][2][-3000:]
    assert weights.downloads() - before == 2  # once per node
    assert all(any(cache.rglob(WEIGHTS)) for cache in caches)
    second = two_nodes(run_dir, caches, tmp_path / "probe_b", weights, "trainer.resume=auto")
    assert all(code == 0 for code, _, _ in second), second[0][2][-3000:] + second[1][2][-3000:]
    assert weights.downloads() - before == 2  # the resumed nodes use their caches
    assert "resumed from" in second[0][1] and "at step 5" in second[0][1]

    # Only global rank 0 writes into the run folder, in both launches.
    for probe in (tmp_path / "probe_a", tmp_path / "probe_b"):
        assert run_writes(probe, 0, run_dir) and not run_writes(probe, 1, run_dir)

    # The same training as one node with two processes: step by step, then the final weights.
    one, two = read_jsonl(one_node_run / "log.jsonl"), read_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in two] == [r["step"] for r in one] == STEPS
    assert all(b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6) for a, b in zip(one, two))
    ta, tb = encoder(one_node_run), encoder(run_dir)
    assert ta.keys() == tb.keys()
    assert max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta) <= 1e-5


def worker_pids(agent: int) -> dict[int, int]:
    """Local rank -> pid of the workers that the torchrun agent ``agent`` started."""
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    found = {}
    for pid in map(int, children):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(v.split(b"=")[1]) for v in environ if v.startswith(b"LOCAL_RANK=")), None)
        if rank is not None:
            found[rank] = pid
    return found


def logged_steps(log: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(log, torn_tail=True)] if log.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(tmp_path, weights, one_node_run):
    run_dir = tmp_path / "run"
    proc = one_node(run_dir, tmp_path / "cache", tmp_path / "probe", weights, "trainer.resume=auto",
                    "trainer.save_every=1", restarts=1)
    deadline, killed = time.monotonic() + 300, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if 2 in logged_steps(run_dir / "log.jsonl"):  # mid-run: 2 of 8 steps done
            workers = worker_pids(proc.pid)
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)  # rank 0, the process that writes the run files
        time.sleep(0.01)
    assert killed is not None, "the run ended before the test could kill a worker"
    out = finished(proc)
    assert "resumed from" in out  # torchrun restarted the group and the run continued from last.safetensors
    assert [r["step"] for r in read_jsonl(run_dir / "log.jsonl")] == STEPS
    ta, tb = encoder(one_node_run), encoder(run_dir)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)  # bit-exact
