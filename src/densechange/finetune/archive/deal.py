"""Dealing work to processes: longest first, each to the least-loaded process (LPT scheduling)."""
from __future__ import annotations

import heapq
from typing import Sequence


def deal(costs: Sequence[int], ranks: int) -> list[list[int]]:
    """Indices of ``costs`` dealt to ``ranks`` processes: largest first, each to the least-loaded one.

    Longest-processing-time-first keeps the last finish within 4/3 of the best possible one, and a
    large scene dealt last can no longer leave one process working alone. Ties go the same way on
    every call (equal costs in index order, equal loads to the lower rank), so every process that
    deals the same costs gets the same shares.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1, got {ranks}")
    shares: list[list[int]] = [[] for _ in range(ranks)]
    loads = [(0, rank) for rank in range(ranks)]  # a heap of (load, rank)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return shares
