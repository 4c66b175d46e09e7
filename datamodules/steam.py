"""Steam user reviews: is the review recommending the game (``voted_up``)?"""

from __future__ import annotations

import random
import re
from pathlib import Path

from distillery.augment import Augment

from .base import TextClassificationDataModule
from .io import DataError, Split, parse_label, read_rows

__all__ = ["SteamReviewsDataModule", "STEAM_COLUMNS"]

STEAM_COLUMNS = ["review_id", "app_id", "game", "created", "voted_up", "review"]
_VOTES = {"0": 0, "1": 1, "false": 0, "true": 1}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class SteamReviewsDataModule(TextClassificationDataModule):
    """Steam reviews from a CSV with columns ``review_id, app_id, game, created, voted_up, review``.

    Rows are filtered, de-duplicated by text, optionally balanced, then split train/val/test,
    stratified by label and seeded. Identical texts (after whitespace and case folding) are kept
    once, so no text appears in two splits. Every dropped row is counted and reported.

    Args:
        csv_path: the reviews CSV (quoted, multi-line texts are fine).
        app_ids: keep only these Steam app ids; None keeps all.
        balance: downsample every class to the size of the smallest one.
        max_per_class: cap each class at this many rows after balancing (the 10k/10k study); None: no cap.
        val_fraction: share of each class held out for validation.
        test_fraction: share of each class held out for test.
        predict_path: CSV with a ``review`` column to label in ``predict``; None predicts the test split.
        **base: see :class:`TextClassificationDataModule`.
    """

    label_names = ["negative", "positive"]

    def __init__(
        self,
        csv_path: str = "../shared/data/steam_reviews/steam_reviews_en.csv",
        app_ids: list[int] | None = None,
        balance: bool = False,
        max_per_class: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        predict_path: str | None = None,
        tokenizer_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        max_length: int = 256,
        batch_size: int = 32,
        eval_batch_size: int = 64,
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
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum below 1")
        self.csv_path = csv_path
        self.app_ids = app_ids
        self.balance = balance
        self.max_per_class = max_per_class
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.predict_path = predict_path

    def read_reviews(self) -> tuple[list[dict], dict[str, int]]:
        """Rows that survive filtering and de-duplication, each with ``text``, ``label`` and ``id``."""
        path = Path(self.csv_path).expanduser()
        rows = read_rows(path, STEAM_COLUMNS)
        dropped: dict[str, int] = {}
        wanted = {str(a) for a in self.app_ids} if self.app_ids else None
        seen: set[str] = set()
        kept = []
        # Visit rows in id order, so which duplicate survives does not depend on the file's order.
        for r in sorted(rows, key=lambda r: (len(r["review_id"]), r["review_id"])):
            label = parse_label(r["voted_up"], _VOTES, path, r["_row"], "voted_up")
            if wanted is not None and r["app_id"].strip() not in wanted:
                dropped["app_id not selected"] = dropped.get("app_id not selected", 0) + 1
                continue
            key = _norm(r["review"])
            if not key:
                dropped["empty review"] = dropped.get("empty review", 0) + 1
                continue
            if key in seen:
                dropped["duplicate text"] = dropped.get("duplicate text", 0) + 1
                continue
            seen.add(key)
            kept.append({"text": r["review"].strip(), "label": label, "id": r["review_id"]})
        if not kept:
            raise DataError(f"{path}: no usable reviews left (dropped: {dropped})")
        return kept, dropped

    def load_splits(self) -> dict[str, Split]:
        rows, dropped = self.read_reviews()
        rng = random.Random(self.seed)
        by_label: dict[int, list[dict]] = {}
        # Sort before shuffling so the split does not depend on the file's row order.
        for r in sorted(rows, key=lambda r: (r["id"], r["text"])):
            by_label.setdefault(r["label"], []).append(r)
        for group in by_label.values():
            rng.shuffle(group)
        cap = min(len(g) for g in by_label.values()) if self.balance else None
        if self.max_per_class is not None:
            cap = min(cap or self.max_per_class, self.max_per_class)
        if cap is not None:
            for label, group in by_label.items():
                if len(group) > cap:
                    dropped[f"class {self.label_names[label]} downsampled"] = len(group) - cap
                    by_label[label] = group[:cap]
        parts: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for group in by_label.values():
            n_val, n_test = round(len(group) * self.val_fraction), round(len(group) * self.test_fraction)
            parts["val"] += group[:n_val]
            parts["test"] += group[n_val : n_val + n_test]
            parts["train"] += group[n_val + n_test :]
        splits = {}
        for name, part in parts.items():
            rng.shuffle(part)
            splits[name] = Split([r["text"] for r in part], [r["label"] for r in part], [r["id"] for r in part])
        splits["train"].dropped = dropped
        splits["predict"] = self._predict_split() if self.predict_path else splits["test"]
        return splits

    def _predict_split(self) -> Split:
        path = Path(self.predict_path).expanduser()
        rows = read_rows(path, ["review"])
        ids = [r.get("review_id") or r["_row"] for r in rows]
        return Split([r["review"] for r in rows], [-1] * len(rows), ids)
