"""Length-grouped batching: batches of similar length waste little compute on padding."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

__all__ = ["EpochShuffleSampler", "LengthGroupedBatchSampler", "ResumableBatchSampler"]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``seed + epoch``, never on the global RNG.

    A run resumed in the middle of an epoch therefore re-creates that epoch's order exactly. This matches
    what Lightning's ``DistributedSampler`` does under DDP, which replaces this sampler there.
    """

    def __init__(self, n: int, seed: int = 0, epoch_source: Callable[[], int] | None = None) -> None:
        self.n, self.seed, self._epoch = n, seed, 0
        self.epoch_source = epoch_source

    @property
    def epoch(self) -> int:
        """``epoch_source()`` when given (the trainer's ``current_epoch``), else the last ``set_epoch``.

        Lightning 2.6 passes ``set_epoch`` one more than the current epoch in the first epoch after
        resuming from an end-of-epoch checkpoint, so the datamodule asks the trainer instead.
        """
        return self.epoch_source() if self.epoch_source is not None else self._epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __len__(self) -> int:
        return self.n

    def permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation(self.epoch))


class ResumableBatchSampler(BatchSampler):
    """Batches of a (seeded) sampler that can start in the middle of an epoch.

    ``resume_epoch``/``resume_batches`` is where a checkpoint stopped (the datamodule computes it from the
    number of batches done). The first iteration after construction serves that epoch minus its first
    ``resume_batches`` batches, whatever epoch counter Lightning reports at that moment (after a restore
    its counters can be one apart); later iterations follow the current epoch, and an iteration of
    ``resume_epoch`` again (Lightning may iterate twice at a restart) skips the same batches. They are
    constructor arguments because Lightning re-creates the batch sampler (with a distributed sampler) under DDP.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, resume_epoch: int = -1,
                 resume_batches: int = 0) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.resume_epoch, self.resume_batches = resume_epoch, resume_batches
        self._epoch = 0
        self._first = True

    @property
    def epoch(self) -> int:
        """Lightning calls ``set_epoch`` on the index sampler, not on this one: follow the sampler's epoch."""
        return getattr(self.sampler, "epoch", self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def indices(self, epoch: int) -> list[int]:
        """The index order of ``epoch``: asked of a seeded sampler, else (a distributed sampler) read off it."""
        if hasattr(self.sampler, "permutation"):
            return self.sampler.permutation(epoch)
        return list(self.sampler)

    def batches(self, epoch: int) -> list[list[int]]:
        indices = self.indices(epoch)
        return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)
                if not self.drop_last or i + self.batch_size <= len(indices)]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.resume_epoch if self._first and self.resume_epoch >= 0 else self.epoch
        self._first = False
        batches = self.batches(epoch)
        if epoch == self.resume_epoch:
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

    def batches(self, epoch: int) -> list[list[int]]:
        indices = self.indices(epoch)
        window = self.batch_size * self.mega_batch_mult
        batches: list[list[int]] = []
        for start in range(0, len(indices), window):
            chunk = sorted(indices[start : start + window], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if len(batches) > 1:
            g = torch.Generator().manual_seed(self.seed + epoch)
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches[0], batches[longest] = batches[longest], batches[0]
            order = torch.randperm(len(batches) - 1, generator=g).tolist()
            batches = [batches[0]] + [batches[1 + o] for o in order]
        return batches
