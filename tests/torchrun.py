"""Launching ``torchrun`` from tests, and finding the workers that it started (to kill one)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch(args: list[str], nproc: int = 2, restarts: int = 0, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=nproc --max-restarts=restarts ARGS`` from the repository root,
    one thread per process, the workers watched every 0.2 s (not 5), with this checkout's sources first on the path."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           f"--max-restarts={restarts}", "--monitor-interval=0.2", *args]  # finished or failed workers seen at once
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
