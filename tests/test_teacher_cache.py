"""Teacher-logit cache: hits run no teacher, misses run it once per text, and it is rebuilt when stale."""

from __future__ import annotations

import pytest
import torch

from distillery.teacher import load_teacher
from distillery.teacher_cache import cache_path, read_cached_logits, teacher_logits
from tests.conftest import NEGATIVE, POSITIVE
from tests.test_distill import calls, make_tiny_teacher  # noqa: F401  (calls is a fixture)

TEXTS = POSITIVE[:4] + NEGATIVE[:4]


@pytest.fixture
def teacher_dir(tmp_path):
    return make_tiny_teacher(tmp_path / "teacher")


def test_miss_then_hit(teacher_dir, tmp_path, calls):
    teacher = load_teacher(str(teacher_dir))
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    first = teacher_logits(path, TEXTS + TEXTS[:2], teacher, batch_size=3)
    assert first.status == "built" and first.computed == len(TEXTS)  # duplicates run once
    assert sum(calls) == len(TEXTS) and path.is_file()
    torch.testing.assert_close(first.logits, teacher.logits(TEXTS + TEXTS[:2]), atol=1e-5, rtol=1e-4)
    calls.clear()

    # A fresh load of the same teacher, texts in another order: answered from disk, rows aligned.
    again = teacher_logits(path, TEXTS[::-1], load_teacher(str(teacher_dir)))
    assert again.status == "hit" and calls == []
    torch.testing.assert_close(again.logits, first.logits[: len(TEXTS)].flip(0))
    assert again.meta["num_parameters"] == teacher.num_parameters
    assert again.meta["label_names"] == ["negative", "positive"]


def test_new_texts_run_only_the_new_ones(teacher_dir, tmp_path, calls):
    teacher = load_teacher(str(teacher_dir))
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    old = teacher_logits(path, TEXTS[:5], teacher)
    calls.clear()
    grown = teacher_logits(path, TEXTS[2:], teacher)
    assert grown.status == "partial" and grown.computed == 3 and calls == [3]
    torch.testing.assert_close(grown.logits[:3], old.logits[2:5])
    # The file now describes exactly the current data: a repeat is a hit, a dropped text is gone.
    calls.clear()
    assert teacher_logits(path, TEXTS[2:], teacher).status == "hit" and calls == []
    with pytest.raises(KeyError, match="not in it"):
        read_cached_logits(path, TEXTS[:1])


def test_changed_teacher_weights_rebuild_everything(teacher_dir, tmp_path, calls):
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    old = teacher_logits(path, TEXTS, load_teacher(str(teacher_dir)))
    # Same directory, retrained weights: the path matches but the fingerprint must not.
    make_tiny_teacher(teacher_dir, seed=1)
    calls.clear()
    new_teacher = load_teacher(str(teacher_dir))
    new = teacher_logits(path, TEXTS, new_teacher)
    assert new.status == "built" and calls == [len(TEXTS)]
    assert not torch.allclose(new.logits, old.logits)
    torch.testing.assert_close(new.logits, new_teacher.logits(TEXTS), atol=1e-5, rtol=1e-4)


def test_changed_max_length_rebuilds(teacher_dir, tmp_path, calls):
    teacher = load_teacher(str(teacher_dir))
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    teacher_logits(path, TEXTS, teacher, max_length=128)
    assert teacher_logits(path, TEXTS, teacher, max_length=4).status == "built"


def test_bf16_and_float32_logits_are_never_mixed(teacher_dir, tmp_path, calls):
    teacher = load_teacher(str(teacher_dir))
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    full = teacher_logits(path, TEXTS, teacher)
    calls.clear()
    half = teacher_logits(path, TEXTS, teacher, precision="bf16")
    assert half.status == "built" and calls == [len(TEXTS)], "another precision is another producer"
    assert half.meta["precision"] == "bf16" and full.meta["precision"] == "32"
    torch.testing.assert_close(half.logits, teacher.logits(TEXTS, precision="bf16"))
    calls.clear()
    assert teacher_logits(path, TEXTS, teacher, precision="bf16").status == "hit" and calls == []


def test_damaged_file_is_rebuilt_not_trusted(teacher_dir, tmp_path, calls):
    teacher = load_teacher(str(teacher_dir))
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    assert teacher_logits(path, TEXTS, teacher).status == "built"
    assert not list(path.parent.glob("*.tmp")), "no temporary file is left behind"


def test_other_ranks_read_without_a_teacher(teacher_dir, tmp_path):
    path = cache_path(tmp_path / "cache", str(teacher_dir), "train")
    with pytest.raises(FileNotFoundError):
        read_cached_logits(path, TEXTS)
    written = teacher_logits(path, TEXTS, load_teacher(str(teacher_dir)))
    torch.testing.assert_close(read_cached_logits(path, TEXTS).logits, written.logits)


def test_cache_files_are_per_teacher_and_split(tmp_path, teacher_dir):
    a = cache_path(tmp_path, str(teacher_dir), "SST2DataModule-train")
    assert a == cache_path(tmp_path, str(teacher_dir) + "/", "SST2DataModule-train")
    assert a != cache_path(tmp_path, str(teacher_dir), "SST2DataModule-val")
    assert a != cache_path(tmp_path, str(tmp_path / "other"), "SST2DataModule-train")
