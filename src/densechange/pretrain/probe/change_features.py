"""Frozen features of change pairs, cell by cell: one pyramid level of both dates, compared.

Both dates go through the encoder in one batch, and the level of stride ``probe.stride`` (the FPN's
finest, 4, or the next, 8) is compared cell by cell: ``|f_A - f_B|`` (``probe.features=diff``), or
that difference beside both dates' features (``concat``), which lets a head weigh what each date
shows. As in the segmentation probe, the labels are brought down to the feature grid rather than
the features up to the pixels: each cell takes the change label at its centre pixel
(:func:`~densechange.pretrain.probe.features.centre_labels`); ignored centres stay ignored.

Example:
    >>> for indices, cells, labels in pair_cells(encoder, pairs, range(len(pairs)), mean=m, std=s, settings=ProbeConfig()):
    ...     cells.shape, labels.shape          # (B, h * w, D) and (B, h * w)
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from densechange.engine.errors import ConfigError
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import centre_labels, shape_batches

__all__ = ["pyramid_level", "pair_features", "pair_cells"]

PAIR_KEYS = ("a", "b", "label")


def pyramid_level(encoder: nn.Module, x: torch.Tensor, stride: int) -> torch.Tensor:
    """The level of ``encoder``'s pyramid at ``stride``: ``(B, D, H / stride, W / stride)``.

    An encoder without a pyramid (``forward_pyramid`` and ``out_strides``) is taken to map to its
    stride-4 features, as the segmentation probe takes it.
    """
    strides = getattr(encoder, "out_strides", None)
    if strides is None or not hasattr(encoder, "forward_pyramid"):
        if stride != 4:
            raise ConfigError(f"probe.stride={stride}: this encoder gives one feature map, taken as stride 4; set "
                              "probe.stride=4.")
        return encoder(x)
    strides = [int(s) for s in strides]
    if stride not in strides:
        raise ConfigError(f"probe.stride={stride}: the encoder's pyramid levels have the strides {strides}; set "
                          "probe.stride to one of them.")
    return encoder.forward_pyramid(x)[strides.index(stride)]


def pair_features(encoder: nn.Module, a: torch.Tensor, b: torch.Tensor, *, stride: int, mode: str) -> torch.Tensor:
    """Compared features of two dates: ``(B, D, h, w)`` for ``diff``, ``(B, 3D, h, w)`` for ``concat``.

    Args:
        a, b: ``(B, C, H, W)`` normalised images of the first and second date.
        mode: ``diff`` (``|f_A - f_B|``) or ``concat`` (``|f_A - f_B|``, ``f_A``, ``f_B``).
    """
    fa, fb = pyramid_level(encoder, torch.cat([a, b]), stride).float().chunk(2)
    diff = (fa - fb).abs()
    return diff if mode == "diff" else torch.cat([diff, fa, fb], 1)


def pair_cells(encoder: nn.Module, dataset: Dataset, indices: Sequence[int], *, mean: Sequence[float],
               std: Sequence[float], settings: ProbeConfig,
               device: torch.device | str = "cpu") -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Per batch of pairs of one shape: their indices, cell features ``(B, h * w, D)`` and cell labels ``(B, h * w)``.

    ``dataset`` yields ``{"a", "b": (C, H, W) float in [0, 1], "label": (H, W) long}``; ``indices`` are the
    pairs to read (a process's shard). Runs under ``torch.no_grad``; the caller sets eval mode.
    """
    device = torch.device(device)
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    with torch.no_grad():
        for index, batch in shape_batches(dataset, settings.batch_size, indices, keys=PAIR_KEYS):
            a = (batch["a"].to(device).float() - mean_t) / std_t
            b = (batch["b"].to(device).float() - mean_t) / std_t
            fmap = pair_features(encoder, a, b, stride=settings.stride, mode=settings.features)
            n, d, h, w = fmap.shape
            labels = centre_labels(batch["label"].to(device).long(), (h, w)).flatten(1)
            yield index, fmap.flatten(2).transpose(1, 2), labels
