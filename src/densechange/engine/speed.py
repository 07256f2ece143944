"""Device settings that make a step faster without changing what it computes (beyond rounding).

- CUDA: ``cudnn.benchmark`` (pick the fastest convolution algorithm for the run's fixed shapes)
  and TF32 matrix products and convolutions (fp32 inputs on tensor cores, 10-bit mantissa
  products with fp32 accumulation), both on by default (``trainer.cudnn_benchmark``,
  ``trainer.tf32``). CPUs are unaffected.
- ``trainer.compile=true``: ``torch.compile`` of the task's heavy modules, in place, so that
  parameter names, checkpoints and DDP stay as they are. A task names those modules with a
  ``compile_targets()`` method (the SaDL and DeepCL tasks name their encoder's backbone, where
  nearly all FLOPs are, and leave out the augmentation and sampling, whose data-dependent shapes
  would break the graph); a task without one is compiled whole.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["configure_cuda", "compile_targets", "compile_task"]


def configure_cuda(device: torch.device, *, tf32: bool = True, cudnn_benchmark: bool = True) -> None:
    """Set the process-wide CUDA backend flags for a run on ``device`` (no-op elsewhere)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def compile_targets(task: nn.Module) -> list[nn.Module]:
    """The modules of ``task`` that ``trainer.compile`` compiles (see the module docstring)."""
    named = getattr(task, "compile_targets", None)
    return list(named()) if callable(named) else [task]


def compile_task(task: nn.Module) -> nn.Module:
    """Compile the task's targets in place with ``torch.compile`` (inductor); returns ``task``."""
    for module in compile_targets(task):
        module.compile()
    return task
