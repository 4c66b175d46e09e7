"""Length-grouped batching: batches of similar length waste little compute on padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

__all__ = ["EpochShuffleSampler", "LengthGroupedBatchSampler", "ResumableBatchSampler"]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``seed + epoch``, never on the global RNG.

    A run resumed in the middle of an epoch therefore re-creates that epoch's order exactly. This matches
    what Lightning's ``DistributedSampler`` does under DDP, which replaces this sampler there.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class ResumableBatchSampler(BatchSampler):
    """Batches of a (seeded) sampler; in epoch ``resume_epoch`` the first ``resume_batches`` are skipped.

    The datamodule passes the position of a mid-epoch checkpoint here, so the resumed epoch continues
    with the batch the interrupted run would have trained on next. They are constructor arguments,
    not attributes, because Lightning re-creates the batch sampler (with a distributed sampler) under DDP.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, resume_epoch: int = -1,
                 resume_batches: int = 0) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.resume_epoch, self.resume_batches = resume_epoch, resume_batches
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Lightning calls ``set_epoch`` on the index sampler, not on this one: follow the sampler's epoch."""
        return getattr(self.sampler, "epoch", self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        return list(super().__iter__())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        if self.epoch == self.resume_epoch:
            batches = batches[self.resume_batches :]
        return iter(batches)


class LengthGroupedBatchSampler(ResumableBatchSampler):
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
        resume_epoch, resume_batches: see :class:`ResumableBatchSampler`.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: Sequence[int] = (),
        mega_batch_mult: int = 50,
        seed: int = 0,
        resume_epoch: int = -1,
        resume_batches: int = 0,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last, resume_epoch, resume_batches)
        self.lengths = lengths
        self.mega_batch_mult = mega_batch_mult
        self.seed = seed

    def batches(self) -> list[list[int]]:
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
        return batches
