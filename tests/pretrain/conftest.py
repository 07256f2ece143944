"""Shared fixtures of the pretraining tests: the reference runs that several tests read.

- ``pretrain_run``: a tiny pretraining run of 4 steps in this process.
- ``one_node_run``: two processes under torchrun (gloo), each recording its steps and writes.
"""
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import save_encoder

from densechange.models import Encoder
from densechange.pretrain.train import main

REPO = Path(__file__).resolve().parents[2]

# About a second on a CPU: timm's smallest ResNet, 64 px synthetic tiles, fp32 whatever the CPU
# (precision=auto would pick bf16 on CPUs with AMX or AVX512-BF16 and fp32 elsewhere).
TINY = [
    "data.root=synthetic",
    "data.synthetic_images=6",
    "data.tile_size=64",
    "aug.size=64",
    "model.init=none",
    "model.backbone=test_resnet",
    "model.neck_channels=32",
    "model.proj_hidden=64",
    "model.proj_dim=32",
    "model.pred_hidden=16",
    "model.points_per_class=8",
    "trainer.batch_size=2",
    "trainer.num_workers=0",
    "trainer.epochs=50",
    "trainer.log_every=1",
    "trainer.device=cpu",
    "trainer.precision=fp32",
]
# 6 images, batch 2: 3 steps per epoch, so 4 steps cross an epoch boundary.
REFERENCE_STEPS = 4


@pytest.fixture(scope="session")
def pretrain_overrides() -> list[str]:
    """Config overrides of the tiny pretraining run (without run.dir and trainer.max_steps)."""
    return list(TINY)


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory) -> Path:
    """Run folder of an uninterrupted tiny pretraining run of 4 steps (read it, do not write into it)."""
    run_dir = tmp_path_factory.mktemp("pretrain") / "run"
    assert main([*TINY, f"run.dir={run_dir}", f"trainer.max_steps={REFERENCE_STEPS}"]) == 0
    return run_dir


# ----------------------------------------------------------------------------------------------
# Two processes under torchrun (gloo on the CPU), each recording what it sees (ddp_probe.py), with
# initial weights served over HTTP: the one-node reference run of the DDP and multi-node tests.

RECORDER = Path(__file__).with_name("ddp_probe.py")  # densechange pretrain, recording what each rank writes
# 16 images / (2 processes x batch 2) = 4 steps per epoch; 2 epochs = 8 steps.
DDP_ARGS = ["--config", "configs/pretrain/demo.yaml", "data.synthetic_images=16", "data.tile_size=64", "aug.size=64",
            "model.backbone=test_resnet", "model.neck_channels=32", "model.proj_hidden=64", "model.proj_dim=32",
            "model.pred_hidden=16", "trainer.batch_size=2", "trainer.epochs=2", "trainer.device=cpu",
            "trainer.precision=fp32", "model.init=served"]
WEIGHTS = "served-encoder.safetensors"


class Launcher:
    """torchrun launches of the recording pretraining run, whose initial weights (``model.init=served``) are a
    file behind a local HTTP server that counts the downloads, named by a registry file."""

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

    def env(self, cache: Path, probe: Path) -> dict[str, str]:
        """Environment of a launch: one thread per process, its weights cache, where the recorder writes."""
        probe.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), "DENSECHANGE_CACHE": str(cache),
                "DENSECHANGE_REGISTRY": str(self.registry), "PROBE_DIR": str(probe)}

    def one_node(self, run_dir: Path, cache: Path, probe: Path, *extra: str, restarts: int = 0) -> subprocess.Popen:
        """``torchrun --standalone --nproc_per_node=2`` of the recording pretraining run."""
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--max-restarts={restarts}", str(RECORDER), *DDP_ARGS, f"run.dir={run_dir}", *extra]
        return subprocess.Popen(cmd, cwd=REPO, env=self.env(cache, probe), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def two_nodes(self, run_dir: Path, caches: list[Path], probe: Path, *extra: str) -> list[tuple[int, str, str]]:
        """Node ranks 0 and 1, one process each, meeting at 127.0.0.1; each node has its own weights cache."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for node in (0, 1):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
                   "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", str(RECORDER), *DDP_ARGS,
                   f"run.dir={run_dir}", *extra]
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=self.env(caches[node], probe), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=400)
            results.append((p.returncode, out, err))
        return results

    @staticmethod
    def finished(proc: subprocess.Popen) -> str:
        """stdout of a launch that must succeed."""
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        return out


@dataclass(frozen=True)
class OneNodeRun:
    run: Path  # the run folder
    probe: Path  # rank<R>.json of each process (ddp_probe.py)


@pytest.fixture(scope="session")
def launcher(tmp_path_factory) -> Launcher:
    launches = Launcher(tmp_path_factory.mktemp("served") / "files")
    yield launches
    launches.server.shutdown()


@pytest.fixture(scope="session")
def one_node_run(tmp_path_factory, launcher) -> OneNodeRun:
    """The DDP reference: one node, two processes, uninterrupted, initial weights downloaded once."""
    root = tmp_path_factory.mktemp("one_node")
    before = launcher.downloads()
    launcher.finished(launcher.one_node(root / "run", root / "cache", root / "probe"))
    assert launcher.downloads() - before == 1  # two processes on one node: one download
    return OneNodeRun(root / "run", root / "probe")
