"""Length-grouped batching: batches of similar length waste little compute on padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

__all__ = ["LengthGroupedBatchSampler"]


class LengthGroupedBatchSampler(BatchSampler):
    """Shuffle, sort within mega-batches by length, then shuffle the batch order.

    Taking indices from ``sampler`` keeps this compatible with Lightning's distributed sampler
    injection: under DDP, Lightning rebuilds this class around a ``DistributedSampler``, so each
    rank groups its own shard. The longest batch comes first so an out-of-memory shows at once.

    Args:
        sampler: source of (shuffled) indices.
        batch_size: rows per batch.
        drop_last: drop the final short batch.
        lengths: token count of every row in the dataset.
        mega_batch_mult: batches per sorting window; larger means less padding and less randomness.
        seed: base seed of the batch-order shuffle, combined with the epoch that Lightning
            passes to ``set_epoch``.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: Sequence[int] = (),
        mega_batch_mult: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.mega_batch_mult = mega_batch_mult
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        window = self.batch_size * self.mega_batch_mult
        batches: list[list[int]] = []
        for start in range(0, len(indices), window):
            chunk = sorted(indices[start : start + window], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if len(batches) > 1:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches[0], batches[longest] = batches[longest], batches[0]
            order = torch.randperm(len(batches) - 1, generator=g).tolist()
            batches = [batches[0]] + [batches[1 + o] for o in order]
        return iter(batches)
