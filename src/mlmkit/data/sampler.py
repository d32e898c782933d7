"""A shuffling sampler whose order depends only on (seed, epoch), so a resumed run sees the same data."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of ``range(n)`` drawn from ``seed + epoch``; call :meth:`use_epoch` per pass.

    The method is deliberately not called ``set_epoch``: Accelerate calls ``set_epoch`` on
    samplers with its own per-dataloader iteration count, which restarts at 0 for the
    fresh dataloader that skips already-seen batches after a resume.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        """Select the permutation of pass ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        yield from torch.randperm(self.n, generator=generator).tolist()

    def __len__(self) -> int:
        return self.n
