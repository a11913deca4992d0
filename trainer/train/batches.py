"""Which tracks each micro-batch holds: a fixed function of (seed, step), so a resume replays the same order.

Each epoch is a seeded permutation of the tracks cut into batches of `batch_size` (the last one may be
smaller; a batch never spans two epochs). Whole tracks of unequal length waste compute on padding, so
when whole tracks are batched, each window of BUCKET_WINDOW batches is sorted by length before it is
cut (similar lengths share a batch) and the batches are then shuffled again: bucketing without
giving up randomness. With batch size 1, or crops of equal length, the order is the plain permutation.
"""
from __future__ import annotations

from functools import lru_cache

import torch

BUCKET_WINDOW = 16  # batches per sorting window


class BatchOrder:
    def __init__(self, seed: int, frames: list[int], batch_size: int, grad_accum: int, bucket: bool):
        self.seed, self.frames = seed, list(frames)
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.bucket = bucket and batch_size > 1 and len(set(frames)) > 1
        self.per_epoch = -(-len(frames) // batch_size)  # batches per epoch, ceil

    def indices(self, step: int, micro: int) -> list[int]:
        k = step * self.grad_accum + micro  # micro-batches drawn before this one
        return list(self._epoch(k // self.per_epoch)[k % self.per_epoch])

    def epoch_at(self, step: int) -> float:
        return step * self.grad_accum / self.per_epoch

    @lru_cache(maxsize=4)
    def _epoch(self, epoch: int) -> tuple[tuple[int, ...], ...]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.frames), generator=g).tolist()
        bs = self.batch_size
        if not self.bucket:
            return tuple(tuple(order[i:i + bs]) for i in range(0, len(order), bs))
        window = bs * BUCKET_WINDOW
        batches = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda i: self.frames[i])
            batches += [tuple(chunk[i:i + bs]) for i in range(0, len(chunk), bs)]
        shuffle = torch.randperm(len(batches), generator=g).tolist()
        return tuple(batches[i] for i in shuffle)
