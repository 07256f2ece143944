"""The run machinery on a CUDA device: an nccl process group of one rank, precision, backend flags.

Marked ``cuda``: skipped without a GPU (``bench/gpu_check.sh`` runs them on one).
"""
import socket

import pytest
import torch
import torch.distributed as dist

from densechange.engine.distributed import all_gather_rows, all_reduce_sum, any_rank, broadcast_object, gather_rows
from densechange.engine.precision import choose_precision, native_precisions
from densechange.engine.speed import configure_cuda

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def nccl_group(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=device)
    yield device
    dist.destroy_process_group()


def test_collectives_of_an_nccl_group_of_one_rank(nccl_group):
    device = nccl_group
    assert dist.get_backend() == "nccl"
    rows = torch.arange(12, dtype=torch.float32).view(4, 3)
    assert torch.equal(all_gather_rows(rows), rows)  # CPU rows travel through the GPU and come back
    assert torch.equal(gather_rows(rows.to(device)).cpu(), rows)
    assert gather_rows(torch.zeros(0, 3)).shape == (0, 3)
    assert all_reduce_sum(torch.ones(2, device=device)).tolist() == [1.0, 1.0]
    assert any_rank(True) and not any_rank(False)
    assert broadcast_object({"scores": [0.5]}) == {"scores": [0.5]}


def test_auto_precision_and_backend_flags_on_the_gpu():
    device = torch.device("cuda", 0)
    major, _ = torch.cuda.get_device_capability(device)
    assert ("bf16" in native_precisions(device)) == torch.cuda.is_bf16_supported(including_emulation=False)
    assert choose_precision("auto", device).precision == ("bf16" if major >= 8 else "fp32")
    configure_cuda(device, tf32=True, cudnn_benchmark=True)
    assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    configure_cuda(device, tf32=False, cudnn_benchmark=False)
    assert not torch.backends.cudnn.benchmark and not torch.backends.cuda.matmul.allow_tf32
    configure_cuda(device)
