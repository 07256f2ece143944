"""The heads of the change probe: what the sampled training cells teach about the rest.

Both heads are fitted on a class-balanced sample (as many unchanged as changed cells), so their
change probability is calibrated to a 50% prior: the threshold-free AUROC is the score to compare
encoders by, and F1 at ``probe.threshold`` tells how a fixed operating point fares.

- :class:`LogisticHead`: logistic regression on the features standardised by the sample's mean and
  spread, ``probe.steps`` full-batch Adam steps from zero weights (so the fit has no random start),
  with an L2 penalty on the weights. A linear read-out: does the feature difference *say* "change" along one direction?
- :class:`KnnHead`: the share of changed cells among the ``probe.k`` nearest sampled cells (L2 on the
  standardised features, through faiss; unweighted votes). Euclidean rather than cosine: the
  magnitude of ``|f_A - f_B|`` is the first cue to change, and cosine would discard it.

A head is plain tensors (fitted on rank 0 and broadcast as they are); the kNN index is rebuilt
from its bank on every process.

Example:
    >>> head = fit_head(sample.features, sample.labels, settings=ProbeConfig(head="logreg"))
    >>> prob = head.probability(cells)         # (N, D) -> (N,) change probability
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch

from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.search import faiss_gpu_available, knn_index, knn_votes

__all__ = ["Standardiser", "LogisticHead", "KnnHead", "ChangeHead", "fit_head"]


@dataclass
class Standardiser:
    """Per-feature mean and spread of the training sample; a constant feature keeps a spread of 1."""

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor) -> "Standardiser":
        std = x.std(0, unbiased=False)
        return cls(x.mean(0), torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.scale.to(x.device)


@dataclass
class LogisticHead:
    """``sigmoid(w . standardise(x) + b)``."""

    standardise: Standardiser
    weight: torch.Tensor
    bias: torch.Tensor
    steps: int

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, *, steps: int, lr: float, weight_decay: float) -> "LogisticHead":
        """Full-batch Adam on the binary cross-entropy plus ``weight_decay / 2 * |w|^2``, from zero weights.

        The gradient of the logistic loss is written out (``X^T (p - y) / n``) and Adam applied by hand
        in float64: a few hundred steps on a few thousand cells take milliseconds, without the
        optimiser machinery's first-call set-up (seconds) that a probe run every epoch would pay.
        """
        x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
        standardise = Standardiser.of(x)
        design = torch.cat([standardise(x).double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)  # bias column
        y = torch.from_numpy(np.asarray(labels)).double()
        decay = torch.full((design.shape[1],), float(weight_decay), dtype=torch.float64)
        decay[-1] = 0.0  # no penalty on the bias
        theta = torch.zeros(design.shape[1], dtype=torch.float64)
        first, second = torch.zeros_like(theta), torch.zeros_like(theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            grad = design.T @ (torch.sigmoid(design @ theta) - y) / y.numel() + decay * theta
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = lr * (first / (1 - beta1**t)) / ((second / (1 - beta2**t)).sqrt() + eps)
            theta -= step
        return cls(standardise, theta[:-1].float(), theta[-1].float(), steps)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` features -> ``(N,)`` change probability, on ``x``'s device."""
        return torch.sigmoid(self.standardise(x.float()) @ self.weight.to(x.device) + self.bias.to(x.device))

    def describe(self) -> str:
        return f"logistic regression ({self.steps} full-batch steps)"


@dataclass
class KnnHead:
    """Share of changed cells among the ``k`` nearest standardised bank cells (exact up to ``exact_max`` cells)."""

    standardise: Standardiser
    bank: np.ndarray
    labels: np.ndarray
    k: int
    exact_max: int
    nprobe: int
    seed: int
    description: str = ""
    _index: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, *, k: int, exact_max: int, nprobe: int, seed: int) -> "KnnHead":
        x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
        standardise = Standardiser.of(x)
        bank = np.ascontiguousarray(standardise(x).numpy(), np.float32)
        return cls(standardise, bank, np.asarray(labels, np.int64), k, exact_max, nprobe, seed)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_index": None}  # a faiss index does not travel; each process builds its own

    def index(self) -> Any:
        if self._index is None:
            import faiss

            index, self.description = knn_index(self.bank, exact_max=self.exact_max, nprobe=self.nprobe, seed=self.seed,
                                                metric="l2")
            if faiss_gpu_available():
                index = faiss.index_cpu_to_all_gpus(index)
            index.add(self.bank)
            self._index = index
        return self._index

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` features -> ``(N,)`` change probability, on ``x``'s device."""
        query = np.ascontiguousarray(self.standardise(x.float()).cpu().numpy(), np.float32)
        _, idx = self.index().search(query, min(self.k, self.bank.shape[0]))
        neighbours = np.where(idx >= 0, self.labels[np.clip(idx, 0, None)], -1)
        votes = knn_votes(None, neighbours, 2, 1.0)
        share = votes[:, 1] / np.maximum(votes.sum(1), 1.0)
        return torch.from_numpy(share).float().to(x.device)

    def describe(self) -> str:
        self.index()
        return f"kNN (k={self.k}, L2, index {self.description})"


ChangeHead = Union[LogisticHead, KnnHead]


def fit_head(features: np.ndarray, labels: np.ndarray, *, settings: ProbeConfig, seed: int = 0) -> ChangeHead:
    """The head ``settings.head`` names, fitted on the sampled cells (``labels`` 0 unchanged, 1 changed)."""
    if settings.head == "knn":
        return KnnHead.fit(features, labels, k=settings.k, exact_max=settings.exact_max, nprobe=settings.nprobe, seed=seed)
    return LogisticHead.fit(features, labels, steps=settings.steps, lr=settings.lr, weight_decay=settings.weight_decay)
