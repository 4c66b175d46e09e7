"""Shared LightningDataModule for text classification: tokenize once, cache, pad per batch."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import warnings

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from distillery.augment import Augment, augment_texts, encoder_neighbours
from distillery.hub import cache_root, resolve_model

from .io import Split, read_texts
from .sampler import EpochShuffleSampler, LengthGroupedBatchSampler, ResumableBatchSampler

# Lightning warns on every mid-epoch resume unless the DataLoader itself has state_dict(); ours resumes
# exactly through the datamodule's state_dict instead (tests/test_resume.py), so the warning would mislead.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

__all__ = ["TextClassificationDataModule", "TokenizedDataset", "pad_collate"]


class TokenizedDataset(Dataset):
    """Token ids per row plus label and row position; padding happens later, per batch."""

    def __init__(self, input_ids: list[list[int]], labels: list[int]) -> None:
        self.input_ids = input_ids
        self.labels = labels
        self.lengths = [len(x) for x in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i], "index": i}


def pad_collate(rows: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of rows to the longest one.

    Returns:
        ``input_ids`` and ``attention_mask`` of shape (B, L_max), ``labels`` and ``index`` of shape (B,).
    """
    longest = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = torch.tensor(r["input_ids"], dtype=torch.long)
        mask[b, :n] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
        "index": torch.tensor([r["index"] for r in rows], dtype=torch.long),
    }


class _Collate:
    # A class, not a lambda, so that DataLoader workers can pickle it.
    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return pad_collate(rows, self.pad_token_id)


class TextClassificationDataModule(L.LightningDataModule):
    """Base for text classification datasets.

    Subclasses read raw splits in :meth:`load_splits` and name their classes in ``label_names``;
    this class tokenizes each split once (cached on disk by content), pads per batch, and groups
    training batches by length.

    Args:
        tokenizer_name: Hub id or directory of the tokenizer; linked from the model's backbone in the CLI.
        max_length: longest token sequence kept; longer texts are truncated.
        batch_size: training batch size (per process).
        eval_batch_size: batch size for validation, test and predict.
        num_workers: DataLoader worker processes.
        group_by_length: sort training rows into batches of similar length (much less padding).
        limit_train: keep a seeded random subset of this many training rows (quick runs); None keeps all.
        seed: seed of splits and subsets.
        cache_dir: where tokenized splits are cached; None uses ``$DISTILLERY_CACHE`` or ``~/.cache/distillery``.
        transfer_path: extra training texts without gold labels (a ``.csv``/``.tsv`` with a ``text``,
            ``sentence`` or ``review`` column, or one text per line), appended to ``train`` with label -1.
            Only a teacher labels them, so only ``DistillationClassifier`` can train on them.
        augment: add unlabelled variants of the long gold training texts, words swapped for their
            neighbours in the tokenizer's model's input embeddings (``distillery.augment.Augment``);
            like ``transfer_path``, for distillation only. None adds nothing.
    """

    label_names: list[str] = []

    def __init__(
        self,
        tokenizer_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        group_by_length: bool = True,
        limit_train: int | None = None,
        seed: int = 42,
        cache_dir: str | None = None,
        transfer_path: str | None = None,
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer_name = tokenizer_name
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.limit_train = limit_train
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "tokenized"
        self.transfer_path = transfer_path
        self.augment = augment
        self.splits: dict[str, Split] = {}
        self.datasets: dict[str, TokenizedDataset] = {}
        self._tokenizer = None
        self._resume_position = (-1, 0)

    # -- exact mid-epoch resume: Lightning stores this in every checkpoint ---------------------------

    def state_dict(self) -> dict:
        """How many training batches are done, so a resumed run starts at the next one (mid-epoch too)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        return {"train_batches_total": int(done), "train_batches_per_epoch": int(trainer.num_training_batches)}

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def load_state_dict(self, state_dict: dict) -> None:
        total, per_epoch = state_dict.get("train_batches_total"), state_dict.get("train_batches_per_epoch")
        if total is not None and per_epoch:
            self._resume_position = divmod(int(total), int(per_epoch))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.tokenizer_name))
        return self._tokenizer

    def load_splits(self) -> dict[str, Split]:
        """Read the raw splits: any of ``train``, ``val``, ``test`` (labelled) and ``predict``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.load_splits()
            if self.limit_train is not None and "train" in self.splits and self.limit_train < len(self.splits["train"]):
                g = torch.Generator().manual_seed(self.seed)
                keep = torch.randperm(len(self.splits["train"]), generator=g)[: self.limit_train].sort().values
                self.splits["train"] = self.splits["train"].subset(keep.tolist())
            if self.augment is not None and self.augment.copies and "train" in self.splits:
                self.splits["train"] = self._augmented(self.splits["train"])
            if self.transfer_path is not None and "train" in self.splits:
                # After limit_train: the limit applies to the gold rows, the transfer set is added whole.
                self.splits["train"] = self.splits["train"].with_unlabelled(read_texts(self.transfer_path))
            for name, split in self.splits.items():
                for reason, count in split.dropped.items():
                    rank_zero_info(f"{type(self).__name__}: {name}: dropped {count} row(s): {reason}")
        for name, split in self.splits.items():
            if name not in self.datasets:
                # Splits that are the same object (SST-2's dev serves val and test) share one dataset.
                same = next((self.datasets[n] for n, s in self.splits.items() if s is split and n in self.datasets), None)
                self.datasets[name] = same or TokenizedDataset(self._tokenize_cached(name, split), split.labels)

    def _augmented(self, split: Split) -> Split:
        """``split`` plus unlabelled variants of its gold texts (after limit_train, so a slice augments itself)."""
        neighbours = encoder_neighbours(self.tokenizer_name, self.augment.neighbours)
        gold = [t for t, y in zip(split.texts, split.labels) if y >= 0]
        extra = augment_texts(gold, neighbours, self.augment)
        rank_zero_info(f"{type(self).__name__}: train: {len(extra):,} augmented texts from {len(neighbours):,} words")
        return split.with_unlabelled(extra, prefix="augment")

    def _cache_key(self, split: Split) -> str:
        tok = self.tokenizer
        h = hashlib.sha256()
        vocab = json.dumps(sorted(tok.get_vocab().items())[:: max(1, len(tok) // 2000)])
        h.update(json.dumps([type(tok).__name__, len(tok), self.max_length, vocab]).encode())
        for t in split.texts:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()[:32]

    def _tokenize_cached(self, name: str, split: Split) -> list[list[int]]:
        path = self.cache_dir / f"{type(self).__name__}-{name}-{self._cache_key(split)}.pt"
        if path.is_file():
            try:
                return torch.load(path)
            except Exception as e:  # a damaged cache is rebuilt, never trusted
                rank_zero_info(f"tokenized cache {path} unreadable ({e}); rebuilding")
        ids = self.tokenizer(split.texts, truncation=True, max_length=self.max_length)["input_ids"]
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash (or a second DDP rank) never sees a half-written cache.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(ids, tmp)
        os.replace(tmp, path)
        return ids

    def _loader(self, name: str, train: bool = False) -> DataLoader:
        if name not in self.datasets:
            raise RuntimeError(f"{type(self).__name__} has no '{name}' split")
        ds = self.datasets[name]
        collate = _Collate(self.tokenizer.pad_token_id)
        common = dict(num_workers=self.num_workers, collate_fn=collate, persistent_workers=self.num_workers > 0)
        if train:
            # The order depends on (seed, epoch) only, and a mid-epoch checkpoint's position is skipped.
            sampler = EpochShuffleSampler(len(ds), self.seed, self._current_epoch)
            epoch, done = self._resume_position
            if self.group_by_length:
                batches = LengthGroupedBatchSampler(sampler, self.batch_size, False, lengths=ds.lengths, seed=self.seed,
                                                    resume_epoch=epoch, resume_batches=done)
            else:
                batches = ResumableBatchSampler(sampler, self.batch_size, False, epoch, done)
            return DataLoader(ds, batch_sampler=batches, **common)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            # Lightning's DistributedSampler pads the last shard with repeated rows, which would count them
            # twice in val/test metrics; each row is evaluated exactly once instead (shards may differ by one).
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(ds, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                                   shuffle=False)
            return DataLoader(ds, batch_size=self.eval_batch_size, sampler=sampler, **common)
        return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
