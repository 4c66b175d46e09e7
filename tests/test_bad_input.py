"""The rows of docs/bad_input.md that no other test file checks: each bad input gets one clear line."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from cli import main
from datamodules import SST2DataModule
from lit_modules import TextClassifier
from lit_modules.lora import LoRAClassifier
from tests.conftest import NEGATIVE, POSITIVE, REPO
from tests.test_lora import sst2, trainer


def sst2_args(tiny_bert, sst2_dir, tmp_path, *extra: str) -> list[str]:
    return [
        "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}", f"--model.init_args.model_name={tiny_bert}",
        f"--data.init_args.data_dir={sst2_dir}", "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false", *extra,
    ]


def cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code != 0
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--trainer.max_epocs=3"], "max_epocs"),  # a typo (argparse accepts an unambiguous prefix such as max_epoch)
        (["--model.init_args.learning_rate=1e-3"], "learning_rate"),
        (["--data.init_args.batch_size=large"], "batch_size"),
        (["--model.init_args.keep_layers=first"], "keep_layers"),
        (["--data.init_args.max_length=0.5"], "max_length"),
    ],
)
def test_unknown_config_keys_and_wrong_types_exit_naming_the_key(extra, names, tiny_bert, sst2_dir, tmp_path, capsys):
    assert names in cli_error(sst2_args(tiny_bert, sst2_dir, tmp_path, *extra), capsys)


def test_unknown_key_in_a_config_file_is_named(tiny_bert, sst2_dir, tmp_path, capsys):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("model:\n  init_args:\n    clasifier_dropout: 0.2\n")
    assert "clasifier_dropout" in cli_error(sst2_args(tiny_bert, sst2_dir, tmp_path, f"--config={overlay}"), capsys)


def test_checkpoint_of_another_module_is_one_clear_error(tiny_bert, sst2_dir, tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    module = LoRAClassifier(model_name=str(tiny_bert), num_labels=2, label_names=["negative", "positive"], r=2)
    trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[ckpt], enable_checkpointing=True).fit(
        module, datamodule=sst2(tiny_bert, sst2_dir)
    )
    # Through the Trainer: LightningCLI first merges the checkpoint's hyper-parameters into the
    # config, and a CLI-written checkpoint brings its own class_path (docs/bad_input.md, row 13).
    with pytest.raises(ValueError) as e:
        trainer(tmp_path).validate(TextClassifier(model_name=str(tiny_bert), num_labels=2),
                                   datamodule=sst2(tiny_bert, sst2_dir), ckpt_path=ckpt.last_model_path)
    message = str(e.value)
    assert "written by lit_modules.lora.LoRAClassifier" in message and "\n" not in message
    assert "--model.class_path=lit_modules.lora.LoRAClassifier" in message


def test_very_long_texts_are_truncated_to_max_length(tiny_bert, tmp_path):
    rant = " ".join([POSITIVE[0]] * 1400)  # about 8,000 characters, as in the longest Steam reviews
    data = tmp_path / "sst2"
    data.mkdir()
    rows = [(rant, 1)] + [(t, 1) for t in POSITIVE[1:]] + [(t, 0) for t in NEGATIVE]
    for name in ("train.tsv", "dev.tsv"):
        (data / name).write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (data / "test.tsv").write_text("index\tsentence\n0\tfine\n")
    dm = SST2DataModule(data_dir=str(data), tokenizer_name=str(tiny_bert), max_length=64, batch_size=4)
    dm.setup("fit")
    assert len(rant) > 7900
    lengths = dm.datasets["train"].lengths
    assert max(lengths) == 64 and lengths[0] == 64  # truncated, not dropped and not an error
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] <= 64


def test_empty_and_whitespace_sentences_are_dropped_and_counted(tiny_bert, sst2_dir):
    rows = (sst2_dir / "train.tsv").read_text().splitlines()
    (sst2_dir / "train.tsv").write_text("\n".join([rows[0], "\t1", "   \t0", *rows[1:]]) + "\n")
    dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert))
    dm.setup("fit")
    assert len(dm.splits["train"]) == 32
    assert dm.splits["train"].dropped == {"empty sentence": 2}


def test_unlabelled_rows_outside_distillation_name_the_module_that_can_train_them(tiny_bert):
    import torch

    from lit_modules import TextClassifier

    module = TextClassifier(model_name=str(tiny_bert), num_labels=2)
    with pytest.raises(ValueError, match="use lit_modules.distill.DistillationClassifier"):
        module.training_loss(torch.zeros(2, 2), {"labels": torch.tensor([0, -1])})


def test_a_damaged_tokenization_cache_is_rebuilt_not_trusted(tiny_bert, sst2_dir, tmp_path):
    def setup():
        dm = SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), cache_dir=str(tmp_path / "tok"))
        dm.setup("fit")
        return dm

    want = setup().datasets["train"].input_ids
    files = sorted((tmp_path / "tok").glob("*.pt"))
    assert files
    for f in files:
        f.write_bytes(b"not a torch file")  # a disk error, a killed copy
    dm = setup()
    assert dm.datasets["train"].input_ids == want
    assert all(f.stat().st_size > 20 for f in files)  # rewritten whole
