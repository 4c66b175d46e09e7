"""Tiny, local, deterministic fixtures: a 2-layer BERT, its tokenizer, and hand-written data rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

POSITIVE = [
    "a charming and often affecting journey",
    "the best film of the year , warm and funny",
    "great soundtrack and lovely graphics",
    "i loved every minute of it",
    "smart , moving and beautifully acted",
    "a fun ride that never gets old",
    "wonderful story with great characters",
    "not bad at all , actually quite good",
]
NEGATIVE = [
    "unflinchingly bleak and desperate",
    "contains no wit , only labored gags",
    "the combat is awful and the story is boring",
    "a dull , lifeless mess",
    "i want my two hours back",
    "broken game , crashes every ten minutes",
    "not good , not even a little",
    "tedious , predictable and far too long",
]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    words = set()
    for text in POSITIVE + NEGATIVE + ["game review positive negative"]:
        words.update(text.lower().replace("\n", " ").split())
    chars = set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:/")
    return SPECIAL + sorted(words) + sorted(chars) + [f"##{c}" for c in sorted(chars)]


def make_tiny_bert(directory: Path, num_layers: int = 2, hidden: int = 32, vocab: list[str] | None = None) -> Path:
    """Write a random-weight BERT encoder and a WordPiece tokenizer that ``from_pretrained`` loads."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = vocab or _vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))


def write_sst2(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    with open(directory / "train.tsv", "w") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows * 2))
    with open(directory / "dev.tsv", "w") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows[::2]))
    with open(directory / "test.tsv", "w") as f:
        f.write("index\tsentence\n" + "".join(f"{i}\t{t}\n" for i, (t, _) in enumerate(rows[1::2])))
    return directory


@pytest.fixture
def sst2_dir(tmp_path) -> Path:
    return write_sst2(tmp_path / "sst2")


def steam_rows(n_per_game: int = 10) -> list[dict]:
    """Reviews for two games, with multi-line texts, quotes and commas, a third of them positive."""
    rows = []
    for g, (app, game) in enumerate([(10, "Alpha Game"), (20, "Beta, the Sequel")]):
        for i in range(n_per_game):
            positive = i % 3 == 0
            base = POSITIVE[i % len(POSITIVE)] if positive else NEGATIVE[i % len(NEGATIVE)]
            text = f'{base}\nreview {g}-{i}, "quoted" part\n\n10/10' if positive else f"{base}, review {g}-{i}"
            rows.append(
                {"review_id": str(1000 + 100 * g + i), "app_id": str(app), "game": game,
                 "created": "2025.08.29 03:29", "voted_up": "1" if positive else "0", "review": text}
            )
    return rows


def write_steam(path: Path, rows: list[dict] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = steam_rows() if rows is None else rows
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["review_id", "app_id", "game", "created", "voted_up", "review"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def steam_csv(tmp_path) -> Path:
    return write_steam(tmp_path / "steam.csv")
