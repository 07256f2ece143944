"""Keeping the processes of a comparison in step under ``torchrun``, between cells.

Each training and scoring command joins the process group when it starts and leaves it when it
ends. Joining a second group in the same job through the same rendezvous store is unsafe: the new
group's keys have the old group's names, so a process that arrives early reads the addresses of
the group just left and fails to connect. So each command gets a rendezvous of its own: rank 0
picks a free port, publishes it on the store that ``torchrun``'s agent keeps for the whole job,
and every process joins that command's group through a new store on that port. The agent's store
also serves as a barrier after each command.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import timedelta
from typing import Iterator

import torch.distributed as dist

from densechange.engine.errors import ConfigError

_PREFIX = "densechange/compare"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class Rendezvous:
    """A fresh rendezvous per command (:meth:`command`) and barriers (:meth:`wait`) for the processes of one job."""

    def __init__(self, timeout_s: float = 24 * 3600) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.timeout_s = timeout_s
        self.store: dist.TCPStore | None = None
        if self.world > 1:
            if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
                raise ConfigError("densechange compare on several processes needs torchrun: the processes meet "
                                  "between cells on the store of torchrun's agent.")
            self.store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                       timeout=timedelta(seconds=timeout_s))

    def wait(self, tag: str) -> None:
        """Return once every process has called ``wait`` with this ``tag``."""
        if self.store is None:
            return
        key = f"{_PREFIX}/{tag}/arrived"
        self.store.add(key, 1)
        start = time.monotonic()
        while self.store.add(key, 0) < self.world:
            if time.monotonic() - start > self.timeout_s:
                raise TimeoutError(f"the processes did not all reach '{tag}' within {self.timeout_s:.0f} s")
            time.sleep(0.05)

    @contextlib.contextmanager
    def command(self, tag: str) -> Iterator[None]:
        """Run one command's process group through its own store; all processes leave together."""
        if self.store is None:
            yield
            return
        key = f"{_PREFIX}/{tag}/port"
        if self.rank == 0:
            self.store.set(key, str(_free_port()))
        port = self.store.get(key).decode()  # waits until rank 0 has published it
        saved = {k: os.environ.get(k) for k in ("MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE")}
        os.environ.update(MASTER_PORT=port, TORCHELASTIC_USE_AGENT_STORE="False")
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.wait(f"{tag}/done")
