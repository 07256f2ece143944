"""Process-group set-up from the environment that ``torchrun`` provides.

One code path serves a laptop CPU, one GPU and many nodes: without ``WORLD_SIZE`` the run is a
single process; under ``torchrun`` each process joins the group (nccl on GPUs, gloo on CPUs) and
binds to its ``LOCAL_RANK`` device. Only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from densechange.engine.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if pref not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"trainer.device is '{pref}'; valid values: auto, cpu, cuda.")
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=cpu or auto.")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


DEFAULT_TIMEOUT_S = 1800


def init_distributed(device_pref: str = "auto", timeout_s: int = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join the process group when launched by ``torchrun``; otherwise describe a single process.

    ``timeout_s`` (``trainer.dist_timeout_s``) is how long a rank may wait in a collective before
    the job is stopped (the nccl watchdog, or gloo's own timeout): it must cover the longest work
    that one rank does while the others wait, such as rank 0 scoring the epoch-end probe.
    """
    if timeout_s < 1:
        raise ConfigError(f"trainer.dist_timeout_s={timeout_s}; give the process-group timeout in seconds (at least 1).")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = timedelta(seconds=timeout_s)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout,
                                store=attempt_store(rank, world, timeout), rank=rank, world_size=world,
                                device_id=device if device.type == "cuda" else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def attempt_store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store of this attempt of the worker group, at ``MASTER_ADDR:MASTER_PORT``.

    When torchrun restarts a failed group (``--max-restarts``), the new workers meet in the store
    that the agent kept from the failed attempt, and its keys are still there: a new rank could
    read a dead rank's address (gloo: connection refused) or communicator id (nccl: a hang). Each
    attempt (``TORCHELASTIC_RESTART_COUNT``) therefore gets its own key prefix.
    """
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                          is_master=rank == 0 and not agent_hosts, timeout=timeout, multi_tenant=True)
    return dist.PrefixStore(f"densechange/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (in place; a no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s buffers (BatchNorm running statistics); a no-op for one process.

    DDP broadcasts them at the start of each forward, but each rank then updates them with its own
    batch, so after the last step they differ across ranks. Evaluation on every rank must use the
    buffers that rank 0 saves, or sharded validation would not equal scoring the saved checkpoint.
    """
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def all_gather_object(obj: object) -> list:
    """Every process's picklable ``obj``, in rank order (a one-element list for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send one picklable Python object from ``src`` to every process (for small control data)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _comm_device() -> torch.device:
    """Where tensors of a collective must live: the current GPU under nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _padded(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``t`` on the collective's device, padded with zero rows to the largest row count, and every rank's count."""
    device = _comm_device()
    count = torch.tensor([t.shape[0]], dtype=torch.long, device=device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = t.new_zeros((max(sizes), *t.shape[1:]), device=device)
    padded[: t.shape[0]] = t.to(device)
    return padded, sizes


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """The rows of ``t`` from every process, concatenated in rank order, on every process.

    Row counts may differ between ranks; tensors travel through the backend (nothing is pickled).
    The result is on ``t``'s device.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    padded, sizes = _padded(t)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(t.device)


def gather_rows(t: torch.Tensor, dst: int = 0) -> torch.Tensor | None:
    """The rows of ``t`` from every process, concatenated in rank order, on ``dst`` only (None elsewhere).

    Like :func:`all_gather_rows`, but only one process holds the whole result.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    padded, sizes = _padded(t)
    if dist.get_rank() != dst:
        dist.gather(padded, None, dst=dst)
        return None
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.gather(padded, parts, dst=dst)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(t.device)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one (False outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t.item() > 0)
