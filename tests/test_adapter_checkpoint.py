"""AdapterCheckpoint: PEFT-format best/last directories that plain peft loads, written atomically."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from peft import AutoPeftModelForSequenceClassification, PeftModel
from transformers import AutoModelForSequenceClassification

from callbacks.adapter_checkpoint import AdapterCheckpoint
from lit_modules import TextClassifier
from tests.test_lora import batch, lora, sst2, trainer

FILES = {"adapter_config.json", "adapter_model.safetensors", "labels.json", "tokenizer.json", "vocab.txt"}


@pytest.fixture
def trained(tiny_bert, sst2_dir, tmp_path):
    """A LoRA run of 2 epochs with an AdapterCheckpoint and a Lightning checkpoint."""
    module = lora(tiny_bert, r=4)
    dm = sst2(tiny_bert, sst2_dir)
    adapters = AdapterCheckpoint(dirpath=str(tmp_path / "adapter"), monitor="val/acc", mode="max")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = trainer(tmp_path, max_epochs=2, callbacks=[adapters, ckpt], enable_checkpointing=True)
    t.fit(module, datamodule=dm)
    return SimpleNamespace(module=module, dm=dm, adapters=adapters, ckpt=ckpt, trainer=t, root=tmp_path / "adapter")


def test_writes_best_and_last(trained, tiny_bert):
    root = trained.root
    assert {p.name for p in root.iterdir()} == {"best", "last"}  # no temporary directories left behind
    for name in ("best", "last"):
        assert FILES <= {p.name for p in (root / name).iterdir()}
    labels = json.loads((root / "best" / "labels.json").read_text())
    assert labels["label_names"] == ["negative", "positive"]
    assert labels["base_model"] == str(tiny_bert)
    assert labels["monitor"] == "val/acc" and labels["value"] == trained.adapters.best
    assert json.loads((root / "last" / "labels.json").read_text())["step"] == trained.trainer.global_step
    config = json.loads((root / "last" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_bert) and config["r"] == 4
    # The callback's best value travels in the Lightning checkpoint, for resumed runs.
    saved = torch.load(trained.ckpt.last_model_path, weights_only=True)
    assert saved["callbacks"][trained.adapters.state_key]["best"] == trained.adapters.best


def test_plain_peft_loads_the_adapter_with_the_same_logits(trained, tiny_bert):
    last = trained.root / "last"
    labels = json.loads((last / "labels.json").read_text())["label_names"]
    x = batch(trained.dm)
    with torch.no_grad():
        expected = trained.module.eval()(x)
        base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=len(labels))
        loaded = PeftModel.from_pretrained(base, last).eval()
        got = loaded(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
        # The Auto class finds the base through adapter_config.json alone.
        auto = AutoPeftModelForSequenceClassification.from_pretrained(last, num_labels=2).eval()
        got_auto = auto(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_auto, expected, atol=1e-6, rtol=0)
    # Adapter and head only: a small fraction of the full model.
    trained.module.save_hf(trained.root.parent / "full")
    full = (trained.root.parent / "full" / "model.safetensors").stat().st_size
    assert (last / "adapter_model.safetensors").stat().st_size < 0.2 * full


def test_crash_mid_write_keeps_the_previous_adapter(trained, monkeypatch):
    last = trained.root / "last"
    before = {p.name: p.read_bytes() for p in last.iterdir()}

    def crash(self, directory, **kwargs):
        (directory / "adapter_model.safetensors").write_bytes(b"half an adapt")
        raise OSError("disk full")

    monkeypatch.setattr(PeftModel, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        trained.adapters.write(trained.trainer, trained.module, "last", {"step": 99})
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    assert {p.name for p in trained.root.iterdir()} == {"best", "last"}


def test_only_rank_zero_writes(trained, tmp_path):
    other_rank = SimpleNamespace(is_global_zero=False, world_size=1, datamodule=None, log_dir=None,
                                 default_root_dir=str(tmp_path))
    callback = AdapterCheckpoint(dirpath=str(tmp_path / "rank1"))
    callback.write(other_rank, trained.module, "last", {})
    assert not (tmp_path / "rank1").exists()


def test_rejects_a_module_without_adapters(tiny_bert, sst2_dir, tmp_path):
    module = TextClassifier(model_name=str(tiny_bert), num_labels=2)
    t = trainer(tmp_path, max_steps=1, callbacks=[AdapterCheckpoint(dirpath=str(tmp_path / "a"))])
    with pytest.raises(TypeError, match="AdapterCheckpoint: TextClassifier.model is not a peft model"):
        t.fit(module, datamodule=sst2(tiny_bert, sst2_dir))


def test_unknown_monitor_fails_loudly(tiny_bert, sst2_dir, tmp_path):
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                callbacks=[AdapterCheckpoint(dirpath=str(tmp_path / "a"), monitor="val/nope")])
    with pytest.raises(KeyError, match="val/nope"):
        t.fit(lora(tiny_bert), datamodule=sst2(tiny_bert, sst2_dir))


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        AdapterCheckpoint(mode="best")
