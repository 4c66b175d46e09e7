"""Synthetic transfer texts for distillation: training sentences with words swapped for embedding neighbours.

TinyBERT's recipe, without GloVe: each word of a long training text is replaced, with probability ``p``,
by one of its nearest neighbours (cosine) in the input embedding table of a pretrained encoder. The
variants carry no label; the teacher labels them, so a replacement that flips the sentiment ("good" to
"bad") is as useful to the student as one that keeps it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

__all__ = ["Augment", "augment_texts", "encoder_neighbours", "word_neighbours"]

# Whole words of a WordPiece ("good"), SentencePiece ("▁good") or byte-level BPE ("Ġgood") vocabulary.
_WORD = re.compile(r"^[▁Ġ]?([a-z]{2,})$")


@dataclass
class Augment:
    """How many variants of which texts.

    Args:
        copies: variants per eligible training text (0 turns augmentation off).
        p: probability that a word with neighbours is replaced.
        min_words: only texts with at least this many whitespace-separated words get variants (SST-2's
            training set is mostly short phrases; its dev set is whole sentences).
        neighbours: a replacement is drawn from this many nearest words.
        seed: the draw; the same texts and seed give the same variants.
    """

    copies: int = 1
    p: float = 0.3
    min_words: int = 10
    neighbours: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise ValueError(f"augment.copies: must be >= 0, got {self.copies}")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"augment.p: must be in (0, 1], got {self.p}")
        if self.neighbours < 1:
            raise ValueError(f"augment.neighbours: must be >= 1, got {self.neighbours}")


def word_neighbours(vocab: dict[str, int], embeddings: torch.Tensor, k: int = 10,
                    chunk: int = 4096) -> dict[str, list[str]]:
    """For every whole-word entry of ``vocab``, its ``k`` nearest other words by cosine of ``embeddings`` rows."""
    words: dict[str, int] = {}
    for token, index in sorted(vocab.items(), key=lambda kv: kv[1]):
        m = _WORD.match(token)
        if m and m.group(1) not in words and index < embeddings.shape[0]:
            words[m.group(1)] = index
    names = list(words)
    if len(names) < 2:
        return {}
    vectors = torch.nn.functional.normalize(embeddings[list(words.values())].float(), dim=-1)
    k = min(k, len(names) - 1)
    table: dict[str, list[str]] = {}
    for start in range(0, len(names), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])] = -2.0  # not itself
        for row, idx in enumerate(sims.topk(k, dim=-1).indices.tolist()):
            table[names[start + row]] = [names[i] for i in idx]
    return table


def augment_texts(texts: list[str], neighbours: dict[str, list[str]], cfg: Augment) -> list[str]:
    """Variants of the texts with at least ``cfg.min_words`` words: new, distinct texts only, in input order."""
    rng = random.Random(cfg.seed)
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        words = text.split()
        if len(words) < cfg.min_words:
            continue
        for _ in range(cfg.copies):
            new = [rng.choice(neighbours[w.lower()]) if w.lower() in neighbours and rng.random() < cfg.p else w
                   for w in words]
            variant = " ".join(new)
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
    return out


def encoder_neighbours(model_name: str, k: int) -> dict[str, list[str]]:
    """:func:`word_neighbours` of a pretrained encoder (Hub id or directory): its tokenizer and input embeddings."""
    from transformers import AutoModel, AutoTokenizer

    from distillery.hub import resolve_model

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    embeddings = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach()
    return word_neighbours(tokenizer.get_vocab(), embeddings, k)
