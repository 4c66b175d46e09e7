"""DistillationClassifier: teacher sources, cached and online KD, tokenizers, and the teacher's isolation."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from cli import main
from datamodules import SST2DataModule, Split
from distillery.teacher import Teacher, load_teacher
from lit_modules.distill import DistillationClassifier
from lit_modules.losses import kd_loss
from tests.conftest import NEGATIVE, POSITIVE, SPECIAL, make_tiny_bert

LABELS = ["negative", "positive"]


def teacher_vocab() -> list[str]:
    """A vocabulary unlike the student's: mostly characters, a handful of words, another order."""
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:/"), reverse=True)
    words = ["good", "bad", "not", "great", "awful", "film", "game", "boring", "fun", "the", "and"]
    return SPECIAL + words + chars + [f"##{c}" for c in chars]


def make_tiny_teacher(directory: Path, vocab: list[str] | None = None, num_layers: int = 2, seed: int = 0) -> Path:
    """A tiny "fine-tuned" classifier directory: random BERT, a saved head with confident logits, label names."""
    from transformers import AutoModelForSequenceClassification

    make_tiny_bert(directory, num_layers=num_layers, vocab=vocab)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        directory, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    with torch.no_grad():
        # Random encoder weights give nearly equal logits; a larger head makes the soft labels informative.
        model.classifier.weight.normal_(0.0, 2.0)
        for layer in model.bert.encoder.layer:
            layer.output.dense.weight.add_(torch.randn_like(layer.output.dense.weight) * seed * 0.1)
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Records how many texts each teacher forward pass was asked for."""
    seen: list[int] = []
    original = Teacher.logits

    def counting(self, texts, batch_size=64, max_length=128, precision="32"):
        seen.append(len(texts))
        return original(self, texts, batch_size=batch_size, max_length=max_length, precision=precision)

    monkeypatch.setattr(Teacher, "logits", counting)
    return seen


@pytest.fixture
def teacher_dir(tmp_path) -> Path:
    return make_tiny_teacher(tmp_path / "teacher", vocab=teacher_vocab())


def fit_args(teacher: Path, student: Path, data_dir: Path, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--model=lit_modules.distill.DistillationClassifier",
        f"--model.init_args.teacher={teacher}",
        f"--model.init_args.model_name={student}",
        f"--model.init_args.teacher_cache_dir={root / 'teacher_cache'}",
        "--data=datamodules.SST2DataModule",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.batch_size=8",
        f"--trainer.default_root_dir={root}",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


class UnlabelledSST2(SST2DataModule):
    """The fixture SST-2 with every training label removed: a transfer set only the teacher labels."""

    def load_splits(self) -> dict[str, Split]:
        splits = super().load_splits()
        train = splits["train"]
        splits["train"] = Split(train.texts, [-1] * len(train), train.ids)
        return splits


# -- teacher sources --------------------------------------------------------------------------


def test_teacher_from_hf_dir_is_frozen_and_named(teacher_dir):
    teacher = load_teacher(str(teacher_dir), num_labels=2)
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.label_names == LABELS
    assert teacher.logits(POSITIVE[:3]).shape == (3, 2)
    with pytest.raises(ValueError, match="predicts 2 classes, the student 3"):
        load_teacher(str(teacher_dir), num_labels=3)


def test_a_bare_encoder_is_refused_as_teacher(tiny_bert):
    with pytest.raises(ValueError, match="not a fine-tuned classifier"):
        load_teacher(str(tiny_bert))


def test_missing_teacher_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_teacher(str(tmp_path / "nope"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="must be a Lightning .ckpt"):
        load_teacher(str(tmp_path / "weights.bin"))


def test_teacher_from_lightning_checkpoint(tiny_bert, sst2_dir, tmp_path):
    cli = main([
        "fit", "--model=lit_modules.TextClassifier", f"--model.init_args.model_name={tiny_bert}",
        "--data=datamodules.SST2DataModule", f"--data.init_args.data_dir={sst2_dir}", "--trainer.max_steps=2",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
    ])
    ckpt = cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    teacher = load_teacher(ckpt, num_labels=2)
    assert teacher.label_names == LABELS
    cli.model.eval()
    enc = cli.datamodule.tokenizer(POSITIVE[:3], padding=True, return_tensors="pt")
    expected = cli.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(teacher.logits(POSITIVE[:3]), expected, atol=1e-5, rtol=1e-4)


def test_teacher_from_lora_adapter_is_merged(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = make_tiny_teacher(tmp_path / "base")
    model = get_peft_model(
        AutoModelForSequenceClassification.from_pretrained(base),
        LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
    )
    with torch.no_grad():  # lora_B starts at zero; make the adapter change the logits
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base)
    teacher = load_teacher(str(tmp_path / "adapter"), num_labels=2)
    assert not any("lora" in n for n, _ in teacher.model.named_parameters()), "the adapter is merged"
    model.eval()
    enc = teacher.tokenizer(NEGATIVE[:3], padding=True, return_tensors="pt")
    expected = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(teacher.logits(NEGATIVE[:3]), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(expected, load_teacher(str(base)).logits(NEGATIVE[:3]), atol=1e-3)


# -- students -----------------------------------------------------------------------------------


def test_keep_layers_student_copies_the_teacher_layers(tmp_path):
    teacher_dir = make_tiny_teacher(tmp_path / "teacher4", num_layers=4)
    student = DistillationClassifier(
        teacher=str(teacher_dir), model_name=str(teacher_dir), keep_layers=[0, 3], label_names=LABELS
    )
    teacher = load_teacher(str(teacher_dir))
    s_layers, t_layers = student.model.bert.encoder.layer, teacher.model.bert.encoder.layer
    assert len(s_layers) == 2 and student.model.config.num_hidden_layers == 2
    for s_index, t_index in ((0, 0), (1, 3)):
        for (name, a), (_, b) in zip(s_layers[s_index].state_dict().items(), t_layers[t_index].state_dict().items()):
            assert torch.equal(a, b), f"student layer {s_index} {name} != teacher layer {t_index}"
    s_emb, t_emb = student.model.bert.embeddings, teacher.model.bert.embeddings
    assert torch.equal(s_emb.word_embeddings.weight, t_emb.word_embeddings.weight)
    assert torch.equal(student.model.classifier.weight, teacher.model.classifier.weight)
    assert not torch.equal(s_layers[1].output.dense.weight, t_layers[1].output.dense.weight)


def test_bad_temperature_or_alpha_fail_early(teacher_dir, tiny_bert):
    with pytest.raises(ValueError, match="temperature"):
        DistillationClassifier(teacher=str(teacher_dir), model_name=str(tiny_bert), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        DistillationClassifier(teacher=str(teacher_dir), model_name=str(tiny_bert), alpha=-0.1)
    with pytest.raises(ValueError, match="teacher_precision must be one of"):
        DistillationClassifier(teacher=str(teacher_dir), model_name=str(tiny_bert), teacher_precision="fp16")


def test_bf16_teacher_logits_are_close_to_float32_and_bad_precision_is_refused(teacher_dir):
    teacher = load_teacher(str(teacher_dir))
    full, half = teacher.logits(POSITIVE + NEGATIVE), teacher.logits(POSITIVE + NEGATIVE, precision="bf16")
    assert half.dtype == torch.float32 and not torch.equal(full, half), "bf16 autocast really ran"
    torch.testing.assert_close(half, full, atol=0.1, rtol=0.05)
    assert torch.equal(half.argmax(-1), full.argmax(-1))
    with pytest.raises(ValueError, match="precision must be one of"):
        teacher.logits(POSITIVE[:1], precision="16")


# -- training -----------------------------------------------------------------------------------


def test_cross_tokenizer_cached_distillation_through_the_cli(teacher_dir, tiny_bert, sst2_dir, tmp_path):
    cli = main(fit_args(teacher_dir, tiny_bert, sst2_dir, tmp_path, "--trainer.max_steps=4", "--trainer.logger=false"))
    teacher = load_teacher(str(teacher_dir))
    text = POSITIVE[0]
    assert teacher.tokenizer(text)["input_ids"] != cli.datamodule.tokenizer(text)["input_ids"], "vocabularies differ"
    texts = cli.datamodule.splits["train"].texts
    # Row i of the table is the teacher's own reading of training text i.
    table = cli.model._teacher_logits["train"]
    assert table.shape == (len(texts), 2)
    for i in (0, 5, len(texts) - 1):
        torch.testing.assert_close(table[i : i + 1], teacher.logits([texts[i]]), atol=1e-5, rtol=1e-4)
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["train/kd_loss"])
    assert 0.0 <= float(metrics["val/agreement"]) <= 1.0
    assert cli.model.param_counts["teacher_total"] == teacher.num_parameters
    assert cli.model.param_counts["student_total"] == sum(p.numel() for p in cli.model.model.parameters())
    assert cli.model._teacher is None, "cached mode frees the teacher after stage 1"


def test_cached_training_runs_no_teacher_forward_the_second_time(teacher_dir, tiny_bert, sst2_dir, tmp_path, calls):
    args = fit_args(teacher_dir, tiny_bert, sst2_dir, tmp_path, "--trainer.max_steps=3", "--trainer.logger=false")
    main(args)
    n_train, n_val = 32, 8  # distinct fixture texts: 16 train (each twice), 8 dev
    assert sum(calls) == 16 + n_val, "stage 1 ran the teacher once per distinct text"
    calls.clear()
    main(args)
    assert calls == [], "stage 2 from a warm cache never runs the teacher"


def test_online_distillation_runs_the_teacher_each_step_and_keeps_it_isolated(
    teacher_dir, tiny_bert, sst2_dir, tmp_path, calls
):
    cli = main(fit_args(
        teacher_dir, tiny_bert, sst2_dir, tmp_path, "--model.init_args.cache_teacher=false", "--trainer.max_steps=3",
        "--trainer.limit_val_batches=0",
    ))
    assert calls[1:] == [8, 8, 8], "val logits once from the cache, then one teacher pass per training step"
    model = cli.model
    teacher = model._teacher
    assert teacher is not None and not teacher.model.training, "the teacher stays in eval mode through fit"
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    # Not a submodule: absent from parameters, state_dict, the optimizer and the checkpoint.
    teacher_ids = {id(p) for p in teacher.model.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    optimizer_ids = {id(p) for g in cli.trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimizer_ids == {id(p) for p in model.model.parameters()}
    ckpt = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert all(k.startswith("model.") for k in ckpt["state_dict"]), sorted(ckpt["state_dict"])[:5]
    saved = sum(v.numel() for v in ckpt["state_dict"].values())
    assert saved == sum(v.numel() for v in model.model.state_dict().values())
    n_opt = sum(len(g["params"]) for g in ckpt["optimizer_states"][0]["param_groups"])
    assert n_opt == len(list(model.model.parameters()))
    assert ckpt["hyper_parameters"]["teacher"] == str(teacher_dir)


def test_texts_without_gold_labels_train_from_the_teacher_alone(teacher_dir, tiny_bert, sst2_dir, tmp_path):
    L.seed_everything(0)
    dm = UnlabelledSST2(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), batch_size=8)
    model = DistillationClassifier(
        teacher=str(teacher_dir), model_name=str(tiny_bert), label_names=LABELS, alpha=0.5, temperature=1.0,
        teacher_cache_dir=str(tmp_path / "cache"), scheduler=None,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )
    dm.setup("fit")
    teacher = load_teacher(str(teacher_dir)).logits(dm.splits["train"].texts)

    def kd_on_train() -> float:
        model.eval()
        collate = dm.train_dataloader().collate_fn
        loader = torch.utils.data.DataLoader(dm.datasets["train"], batch_size=64, collate_fn=collate)
        batch = next(iter(loader))
        with torch.no_grad():
            value = float(kd_loss(model(batch), teacher[batch["index"]], 1.0))
        model.train()  # Lightning keeps the modes it finds: leave dropout on for fit
        return value

    before = kd_on_train()
    trainer = L.Trainer(
        max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    m = trainer.callback_metrics
    # No gold label anywhere: the loss is exactly the weighted KD term.
    torch.testing.assert_close(m["train/loss"], 0.5 * m["train/kd_loss"])
    assert kd_on_train() < 0.5 * before, "the student moved toward the teacher"


def test_a_teacher_with_other_classes_is_refused(tmp_path, tiny_bert, sst2_dir):
    from transformers import AutoConfig

    teacher_dir = make_tiny_teacher(tmp_path / "teacher")
    config = AutoConfig.from_pretrained(teacher_dir)
    config.id2label, config.label2id = {0: "spam", 1: "ham"}, {"spam": 0, "ham": 1}
    config.save_pretrained(teacher_dir)
    with pytest.raises(ValueError, match=r"classes \['spam', 'ham'\] differ"):
        main(fit_args(teacher_dir, tiny_bert, sst2_dir, tmp_path, "--trainer.fast_dev_run=true"))


@pytest.mark.parametrize("keep", [None, [1]])
def test_teacher_from_lora_training_outputs(tmp_path, tiny_bert, sst2_dir, keep):
    """Both things a LoRA run leaves behind serve as teachers: its adapter directory and its .ckpt."""
    cli = main([
        "fit", "--model=lit_modules.lora.LoRAClassifier", f"--model.init_args.model_name={tiny_bert}",
        f"--model.init_args.keep_layers={json.dumps(keep)}", "--data=datamodules.SST2DataModule",
        f"--data.init_args.data_dir={sst2_dir}", "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.callbacks+=callbacks.adapter_checkpoint.AdapterCheckpoint",
        f"--trainer.callbacks.dirpath={tmp_path / 'adapter'}",
    ])
    expected = cli.model.hf_model().eval()
    enc = cli.datamodule.tokenizer(NEGATIVE[:3], padding=True, return_tensors="pt")
    want = expected(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    for source in (tmp_path / "adapter" / "last", cli.trainer.checkpoint_callback.best_model_path):
        teacher = load_teacher(str(source), num_labels=2)
        assert teacher.label_names == LABELS
        assert teacher.model.config.num_hidden_layers == (len(keep) if keep else 2)
        torch.testing.assert_close(teacher.logits(NEGATIVE[:3]), want, atol=1e-5, rtol=1e-4)

def test_transfer_texts_from_a_file_are_teacher_labelled(teacher_dir, tiny_bert, sst2_dir, tmp_path):
    # SST-2's unlabelled test.tsv (index, sentence) as the transfer set.
    cli = main(fit_args(
        teacher_dir, tiny_bert, sst2_dir, tmp_path, f"--data.init_args.transfer_path={sst2_dir / 'test.tsv'}",
        "--trainer.max_steps=6", "--trainer.logger=false",
    ))
    train = cli.datamodule.splits["train"]
    n_extra = sum(1 for _ in open(sst2_dir / "test.tsv")) - 1
    assert train.labels.count(-1) == n_extra and train.ids[-1] == f"transfer:{n_extra - 1}"
    table = cli.model._teacher_logits["train"]
    assert table.shape[0] == len(train)
    torch.testing.assert_close(table[-1:], load_teacher(str(teacher_dir)).logits(train.texts[-1:]), atol=1e-5, rtol=1e-4)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
