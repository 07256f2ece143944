"""Batch norm folded into the convolution before it, for models that only predict.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
convolution with rescaled weights and a shifted bias. Folding removes a full pass over every
activation map (a quarter of a ResNet's inference time on a CPU goes to such passes) and is what
ONNX Runtime does to an exported graph; without it PyTorch prediction would trail the exported model.

Which convolution feeds which norm is read off one forward pass (hooks see the conv's output
tensor arrive at the norm), so any backbone works without naming its layers. A pair is folded only
when both modules run once per forward and the norm's input is exactly the conv's output; the
folded model is then checked against the original on the same input, and left unfolded (with the
reason) if it differs by more than rounding.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["FoldReport", "fold_batch_norms"]


@dataclass(frozen=True)
class FoldReport:
    """How many norms were folded, out of how many, and why none were when the check failed."""

    folded: int
    norms: int
    difference: float = 0.0
    refused: str | None = None


def _pairs(model: nn.Module, run: Callable[[nn.Module], Any]) -> list[tuple[str, str]]:
    """``(conv name, norm name)`` for each norm whose input is a conv's output, both called once in ``run``."""
    names = {module: name for name, module in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}  # id(output) -> (conv, output kept alive)
    found: list[tuple[nn.Module, nn.Module]] = []

    def after_conv(module: nn.Module, _: Any, out: torch.Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        produced[id(out)] = (module, out)

    def before_norm(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        calls[module] = calls.get(module, 0) + 1
        hit = produced.get(id(inputs[0]))
        if hit is not None and hit[1] is inputs[0]:
            found.append((hit[0], module))

    hooks = []
    for module in model.modules():
        if type(module) is nn.Conv2d:
            hooks.append(module.register_forward_hook(after_conv))
        elif type(module) is nn.BatchNorm2d and module.track_running_stats:
            hooks.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for hook in hooks:
            hook.remove()
    return [(names[c], names[n]) for c, n in found if calls[c] == 1 and calls[n] == 1]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _outputs(o)]
    return []


def fold_batch_norms(model: nn.Module, run: Callable[[nn.Module], Any], *, rtol: float = 1e-4
                     ) -> tuple[nn.Module, FoldReport]:
    """``model`` (in eval mode) with every conv -> batch-norm pair folded, checked on ``run``.

    Args:
        model: the network; it is not modified.
        run: calls the model on a representative input, e.g. ``lambda m: m(a, b)``; used to find
            the pairs and to compare the folded model with the original.
        rtol: largest accepted difference, relative to the largest output magnitude.
    Returns:
        ``(model to use, report)``: a folded copy, or ``model`` itself when nothing folds or the
        check fails.
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode: folding freezes the running statistics.")
    norms = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    pairs = _pairs(model, run)
    if not pairs:
        return model, FoldReport(0, norms)
    folded = copy.deepcopy(model)
    for conv_name, norm_name in pairs:
        conv, norm = folded.get_submodule(conv_name), folded.get_submodule(norm_name)
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, norm))
        _replace(folded, norm_name, nn.Identity())
    with torch.no_grad():
        before, after = _outputs(run(model)), _outputs(run(folded))
    scale = max((float(t.abs().max()) for t in before if t.numel()), default=1.0) or 1.0
    difference = max((float((x.float() - y.float()).abs().max()) for x, y in zip(before, after) if x.numel()),
                     default=0.0) / scale
    if len(before) != len(after) or difference > rtol:
        return model, FoldReport(0, norms, difference, f"the folded model differs by {difference:.2g} (relative)")
    return folded, FoldReport(len(pairs), norms, difference)
