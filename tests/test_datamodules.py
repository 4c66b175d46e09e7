"""Datamodules: parsing, deterministic leak-free splits, caching, batching and bad rows."""

from __future__ import annotations

import csv

import pytest
import torch

from datamodules import DataError, SST2DataModule, SteamReviewsDataModule
from datamodules.sampler import LengthGroupedBatchSampler
from tests.conftest import steam_rows, write_steam


def steam(tiny_bert, path, **kw) -> SteamReviewsDataModule:
    dm = SteamReviewsDataModule(csv_path=str(path), tokenizer_name=str(tiny_bert), val_fraction=0.2, test_fraction=0.2, **kw)
    dm.setup("fit")
    return dm


def test_steam_parses_quoted_multiline_reviews(tiny_bert, steam_csv):
    dm = steam(tiny_bert, steam_csv)
    texts = [t for s in ("train", "val", "test") for t in dm.splits[s].texts]
    assert len(texts) == 20
    multi = [t for t in texts if "\n" in t]
    assert multi and all('"quoted" part' in t for t in multi)
    labels = [y for s in ("train", "val", "test") for y in dm.splits[s].labels]
    assert sum(labels) == 8  # rows i % 3 == 0 of 10 per game are positive


def test_steam_split_is_deterministic_stratified_and_leak_free(tiny_bert, tmp_path):
    rows = steam_rows(30)
    rows.append(dict(rows[0], review_id="999999"))  # an identical text under another id
    path = write_steam(tmp_path / "s.csv", rows)
    shuffled = write_steam(tmp_path / "shuffled.csv", rows[::-1])
    a, b, c = steam(tiny_bert, path), steam(tiny_bert, path), steam(tiny_bert, shuffled)
    for name in ("train", "val", "test"):
        assert a.splits[name].ids == b.splits[name].ids
        assert sorted(a.splits[name].ids) == sorted(c.splits[name].ids)  # file order does not matter
    seen = {}
    for name in ("train", "val", "test"):
        for t in a.splits[name].texts:
            assert seen.setdefault(t.lower(), name) == name, f"{t!r} in two splits"
    assert a.splits["train"].dropped == {"duplicate text": 1}
    for name in ("val", "test"):  # stratified: each held-out split keeps the positive share
        share = sum(a.splits[name].labels) / len(a.splits[name])
        assert 0.25 <= share <= 0.45


def test_steam_filter_balance_and_empty_rows(tiny_bert, tmp_path):
    rows = steam_rows(30)
    rows[31] = dict(rows[31], review="   \n ")  # app 20, a negative review
    dm = steam(tiny_bert, write_steam(tmp_path / "s.csv", rows), app_ids=[20], balance=True)
    all_ids = [i for s in ("train", "val", "test") for i in dm.splits[s].ids]
    assert all(i.startswith("11") for i in all_ids)  # app 20 has ids 1100..
    labels = [y for s in ("train", "val", "test") for y in dm.splits[s].labels]
    assert labels.count(0) == labels.count(1) == 10  # app 20: 10 positive, 19 usable negative
    dropped = dm.splits["train"].dropped
    assert dropped["app_id not selected"] == 30 and dropped["empty review"] == 1
    assert dropped["class negative downsampled"] == 9


def test_steam_max_per_class(tiny_bert, tmp_path):
    dm = steam(tiny_bert, write_steam(tmp_path / "s.csv", steam_rows(30)), max_per_class=6)
    labels = [y for s in ("train", "val", "test") for y in dm.splits[s].labels]
    assert labels.count(0) == 6 and labels.count(1) == 6


@pytest.mark.parametrize(
    "content, message",
    [
        ("review_id,app_id,game,created,review\n1,2,g,c,text\n", "missing column(s) ['voted_up']"),
        ("review_id,app_id,game,created,voted_up,review\n1,2,g,c,maybe,text\n", "row 2: voted_up='maybe' is not a known label"),
        ("review_id,app_id,game,created,voted_up,review\n1,2,g,c,1,ok\nreview_id,app_id,game,created,voted_up,review\n", "row 3: the header is repeated"),
        ('review_id,app_id,game,created,voted_up,review\n1,2,g,c,1,"never closed\n', "malformed CSV"),
        ("review_id,app_id,game,created,voted_up,review\n1,2,g,c,1\n", "row 2: expected 6 fields"),
        ("", "empty file"),
    ],
)
def test_steam_bad_rows_name_file_row_and_field(tiny_bert, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as e:
        steam(tiny_bert, path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_non_utf8_is_named(tiny_bert, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("review_id,app_id,game,created,voted_up,review\n1,2,g,c,1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv: not valid UTF-8 at byte"):
        steam(tiny_bert, path)


def test_sst2_reads_tsv_and_predict_split(tiny_bert, sst2_dir):
    dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert))
    dm.setup("fit")
    assert len(dm.splits["train"]) == 32 and len(dm.splits["val"]) == 8
    assert dm.splits["test"] is dm.splits["val"]  # GLUE test labels are private
    assert dm.splits["predict"].labels == [-1] * 8 and dm.splits["predict"].ids[0] == "0"
    assert dm.label_names == ["negative", "positive"] and dm.num_labels == 2


def test_sst2_missing_dir_file_and_bad_label(tiny_bert, sst2_dir, tmp_path):
    with pytest.raises(DataError, match="data_dir .*nowhere does not exist"):
        SST2DataModule(data_dir=str(tmp_path / "nowhere"), tokenizer_name=str(tiny_bert)).setup("fit")
    (sst2_dir / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"dev.tsv: file not found"):
        SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert)).setup("fit")
    (sst2_dir / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    with pytest.raises(DataError, match=r"dev.tsv: row 3: label='7' is not a known label"):
        SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert)).setup("fit")


def test_tokenized_cache_is_reused(tiny_bert, sst2_dir, tmp_path, monkeypatch):
    cache = tmp_path / "tok"
    SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), cache_dir=str(cache)).setup("fit")
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 3  # train, val (shared with test), predict
    dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), cache_dir=str(cache))
    calls = []
    monkeypatch.setattr(type(dm.tokenizer), "__call__", lambda *a, **k: calls.append(1))
    dm.setup("fit")
    assert calls == [] and sorted(p.name for p in cache.iterdir()) == files
    assert dm.datasets["train"].input_ids[0][0] == dm.tokenizer.cls_token_id
    (sst2_dir / "train.tsv").write_text("sentence\tlabel\nnew text\t1\n")  # changed data: new cache entry
    monkeypatch.undo()
    SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), cache_dir=str(cache)).setup("fit")
    assert len(list(cache.iterdir())) == 4


def test_batches_pad_dynamically_and_group_by_length(tiny_bert, sst2_dir):
    dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), batch_size=4, limit_train=16)
    dm.setup("fit")
    assert len(dm.splits["train"]) == 16
    batches = list(dm.train_dataloader())
    assert sum(b["input_ids"].shape[0] for b in batches) == 16
    lengths = dm.datasets["train"].lengths
    for b in batches:
        assert b["input_ids"].shape[1] == max(lengths[i] for i in b["index"].tolist())  # no pad-to-128
        assert torch.equal(b["attention_mask"].sum(1), torch.tensor([lengths[i] for i in b["index"].tolist()]))


def test_length_grouped_sampler_covers_all_rows_and_is_seeded():
    lengths = [(i * 37) % 50 + 1 for i in range(200)]
    torch.manual_seed(0)
    a = list(LengthGroupedBatchSampler(range(200), 8, False, lengths=lengths, mega_batch_mult=4, seed=1))
    b = list(LengthGroupedBatchSampler(range(200), 8, False, lengths=lengths, mega_batch_mult=4, seed=1))
    assert a == b and sorted(i for batch in a for i in batch) == list(range(200))
    assert max(lengths[i] for i in a[0]) == max(lengths)  # the longest batch runs first
    spread = sum(max(lengths[i] for i in x) - min(lengths[i] for i in x) for x in a) / len(a)
    assert spread < 15  # random batches of 8 from lengths 1..50 spread about 40


def test_epoch_order_depends_on_seed_and_epoch_only_and_resume_skips_done_batches():
    import torch

    from datamodules.sampler import EpochShuffleSampler, LengthGroupedBatchSampler, ResumableBatchSampler

    lengths = [(i * 7) % 13 + 1 for i in range(40)]

    def batches(epoch, **resume):
        torch.manual_seed(epoch * 1000 + 7)  # the global RNG must not matter
        s = LengthGroupedBatchSampler(EpochShuffleSampler(40, seed=3), 4, False, lengths=lengths, seed=3,
                                      mega_batch_mult=2, **resume)
        s.sampler.set_epoch(epoch)  # what Lightning calls each epoch
        return list(s)

    assert batches(1) == batches(1) and batches(0) != batches(1)
    # The first iteration after a restore serves the checkpoint's epoch minus its done batches, whatever
    # epoch counter Lightning reports then; the next epochs are whole.
    assert batches(2, resume_epoch=1, resume_batches=3) == batches(1)[3:]
    s = LengthGroupedBatchSampler(EpochShuffleSampler(40, seed=3), 4, False, lengths=lengths, seed=3,
                                  mega_batch_mult=2, resume_epoch=1, resume_batches=3)
    first = list(s)
    s.sampler.set_epoch(2)
    assert first == batches(1)[3:] and list(s) == batches(2)
    plain = ResumableBatchSampler(EpochShuffleSampler(10, seed=0), 4, False, resume_epoch=0, resume_batches=1)
    assert [len(b) for b in plain] == [4, 2] and sorted(sum(list(ResumableBatchSampler(EpochShuffleSampler(10), 4, False)), [])) == list(range(10))
