"""Augmented transfer texts: embedding neighbours, reproducible word swaps, and unlabelled rows for distillation."""

from __future__ import annotations

import pytest
import torch

from cli import main
from datamodules import SST2DataModule
from distillery.augment import Augment, augment_texts, word_neighbours
from tests.conftest import NEGATIVE, POSITIVE
from tests.test_distill import fit_args, make_tiny_teacher, teacher_vocab

# Two tight clusters in a 2-d embedding space, plus tokens that are not whole words.
VOCAB = {"[CLS]": 0, "good": 1, "great": 2, "bad": 3, "awful": 4, "##ing": 5, "▁fine": 6, "a": 7, "x1": 8}
EMB = torch.tensor([[0, 0], [1, 0.1], [1, 0.2], [-1, 0.1], [-1, 0.2], [1, 0.15], [0.9, 0.1], [0, 1], [0, -1]])


def test_neighbours_are_the_nearest_other_whole_words():
    table = word_neighbours(VOCAB, EMB, k=2)
    assert set(table) == {"good", "great", "bad", "awful", "fine"}, "no specials, subwords, 1-letter or digit tokens"
    assert set(table["good"]) == {"great", "fine"} and table["bad"][0] == "awful"
    assert all(w not in table[w] for w in table)


def test_variants_are_reproducible_new_and_only_for_long_texts():
    table = {"good": ["great"], "bad": ["awful"]}
    texts = ["a good film", "good and bad and good and bad", "nothing to swap here at all"]
    cfg = Augment(copies=3, p=1.0, min_words=3)
    out = augment_texts(texts, table, cfg)
    # p = 1 swaps every known word, so the 3 copies of each text collapse to one new variant; none repeats a text.
    assert out == ["a great film", "great and awful and great and awful"]
    assert augment_texts(texts, table, Augment(copies=1, p=1.0, min_words=4)) == out[1:]
    half = Augment(copies=4, p=0.5, min_words=3, seed=1)
    assert augment_texts(texts, table, half) == augment_texts(texts, table, half)
    assert not set(augment_texts(texts, table, half)) & set(texts)


@pytest.mark.parametrize("bad, message", [
    (dict(p=0.0), r"augment.p: must be in \(0, 1\], got 0.0"),
    (dict(copies=-1), "augment.copies: must be >= 0"),
    (dict(neighbours=0), "augment.neighbours: must be >= 1"),
])
def test_bad_augment_options_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        Augment(**bad)


def test_datamodule_appends_unlabelled_variants_of_gold_texts(tiny_bert, sst2_dir):
    dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), augment=Augment(p=0.5, min_words=4))
    dm.setup("fit")
    train, plain = dm.splits["train"], SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert))
    plain.setup("fit")
    n = len(plain.splits["train"])
    extra = train.texts[n:]
    assert train.texts[:n] == plain.splits["train"].texts and extra, "gold rows first, untouched"
    assert train.labels[n:] == [-1] * len(extra) and train.ids[n] == "augment:0"
    assert len(dm.datasets["train"]) == len(train) and not set(extra) & set(train.texts[:n])


def test_distillation_trains_on_teacher_labelled_variants(tiny_bert, sst2_dir, tmp_path):
    teacher = make_tiny_teacher(tmp_path / "teacher", vocab=teacher_vocab())
    cli = main(fit_args(teacher, tiny_bert, sst2_dir, tmp_path, "--data.init_args.augment={p: 0.5, min_words: 4}",
                        "--trainer.max_steps=4", "--trainer.logger=false"))
    train = cli.datamodule.splits["train"]
    table = cli.model._teacher_logits["train"]
    assert table.shape[0] == len(train) and train.labels.count(-1) > 0
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert set(POSITIVE + NEGATIVE) >= {t for t, y in zip(train.texts, train.labels) if y >= 0}
