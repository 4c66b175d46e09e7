"""GLUE SST-2: binary sentiment of movie-review sentences."""

from __future__ import annotations

from pathlib import Path

from distillery.augment import Augment

from .base import TextClassificationDataModule
from .io import DataError, Split, parse_label, read_rows

__all__ = ["SST2DataModule"]


class SST2DataModule(TextClassificationDataModule):
    """SST-2 from GLUE-format TSV files, or from the Hub's ``glue/sst2`` when no local copy is given.

    ``train.tsv`` trains, ``dev.tsv`` validates and tests (GLUE's test labels are private), and
    ``test.tsv`` (``index\\tsentence``, unlabelled) is what ``predict`` labels.

    Args:
        data_dir: folder with ``train.tsv``, ``dev.tsv`` and ``test.tsv``; None loads ``glue/sst2`` through ``datasets``.
        **base: see :class:`TextClassificationDataModule`.
    """

    label_names = ["negative", "positive"]
    _labels = {"0": 0, "1": 1}

    def __init__(
        self,
        data_dir: str | None = None,
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
        super().__init__(
            tokenizer_name, max_length, batch_size, eval_batch_size, num_workers, group_by_length, limit_train,
            seed, cache_dir, transfer_path, augment,
        )
        self.data_dir = data_dir

    def _read_labelled(self, path: Path) -> Split:
        rows = read_rows(path, ["sentence", "label"], delimiter="\t")
        split = Split([], [], [])
        for r in rows:
            if not r["sentence"].strip():
                split.dropped["empty sentence"] = split.dropped.get("empty sentence", 0) + 1
                continue
            split.texts.append(r["sentence"].strip())
            split.labels.append(parse_label(r["label"], self._labels, path, r["_row"], "label"))
            split.ids.append(r["_row"])
        return split

    def load_splits(self) -> dict[str, Split]:
        if self.data_dir is None:
            return self._load_hub()
        root = Path(self.data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"SST-2 data_dir {root} does not exist (expected train.tsv, dev.tsv, test.tsv)")
        dev = self._read_labelled(root / "dev.tsv")
        splits = {"train": self._read_labelled(root / "train.tsv"), "val": dev, "test": dev}
        test_path = root / "test.tsv"
        if test_path.is_file():
            rows = read_rows(test_path, ["index", "sentence"], delimiter="\t")
            splits["predict"] = Split([r["sentence"].strip() for r in rows], [-1] * len(rows), [r["index"] for r in rows])
        return splits

    def _load_hub(self) -> dict[str, Split]:
        from datasets import load_dataset

        ds = load_dataset("glue", "sst2")

        def split(name: str) -> Split:
            part = ds[name]
            return Split(list(part["sentence"]), list(part["label"]), [str(i) for i in part["idx"]])

        dev = split("validation")
        return {"train": split("train"), "val": dev, "test": dev, "predict": split("test")}
