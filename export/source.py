"""Turn what the user has (a Lightning checkpoint, an HF model dir, a LoRA adapter dir) into a plain HF dir.

Everything downstream (ONNX export, parity, quantization) reads one ``save_pretrained`` directory
with the tokenizer and the label names, so each kind of input is resolved here, once.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from distillery.hub import resolve_model

__all__ = ["DEFAULT_MODULE", "SourceError", "source_kind", "write_hf_dir"]

# Checkpoints written by LightningCLI record their class (``_class_path``); others are assumed to be this.
DEFAULT_MODULE = "lit_modules.TextClassifier"


class SourceError(ValueError):
    """The export source is not a checkpoint, an HF model directory or an adapter directory."""


def source_kind(source: str | Path) -> str:
    """``checkpoint``, ``adapter`` or ``hf``."""
    path = Path(source)
    if path.is_file():
        return "checkpoint"
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "config.json").is_file():
        return "hf"
    raise SourceError(
        f"{path}: not a Lightning checkpoint file, an HF model directory (config.json) "
        "or a PEFT adapter directory (adapter_config.json)"
    )


def _quiet_load(load):
    # "Some weights were newly initialized" is expected when an adapter supplies the head.
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load()
    finally:
        hf_logging.set_verbosity(verbosity)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise SourceError(f"cannot import the module class {class_path!r}: {e}") from None


def _from_checkpoint(ckpt: Path, target: Path, module_class: str | None) -> dict:
    import torch
    from transformers import AutoTokenizer

    # mmap: only the hyper-parameters are needed here, not the (large) tensors. The checkpoint is the
    # user's own training output, so unpickling it is trusted.
    try:
        try:
            checkpoint = torch.load(ckpt, map_location="cpu", mmap=True, weights_only=False)
        except RuntimeError:  # an old, non-zip torch.save file cannot be memory-mapped
            checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise SourceError(f"{ckpt}: cannot be read as a Lightning checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SourceError(f"{ckpt}: not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters", {})
    class_path = hparams.get("_class_path") or module_class or DEFAULT_MODULE
    cls = _import(class_path)
    module = _quiet_load(lambda: cls.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False))
    module.eval()
    model_name = getattr(module.hparams, "model_name", None)
    if model_name is None:
        raise SourceError(f"{ckpt}: the checkpoint's hyper-parameters name no model_name to take the tokenizer from")
    module.save_hf(target, AutoTokenizer.from_pretrained(resolve_model(model_name)))
    return {"kind": "checkpoint", "module_class": class_path, "base_model": model_name}


def _adapter_labels(adapter: Path, label_names: list[str] | None) -> list[str]:
    """Label names for an adapter: given, from a config.json beside it, or counted from its saved head."""
    if label_names:
        return list(label_names)
    config = adapter / "config.json"
    if config.is_file():
        id2label = json.loads(config.read_text()).get("id2label")
        if id2label:
            return [id2label[str(i)] for i in range(len(id2label))]
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            # The head is saved whole (peft's modules_to_save); its output layer is the smallest 2-D weight.
            sizes = [f.get_slice(k).get_shape()[0] for k in f.keys()
                     if "lora_" not in k and k.endswith("weight") and len(f.get_slice(k).get_shape()) == 2
                     and any(h in k for h in ("classifier", "score", "out_proj"))]
        if sizes:
            return [f"LABEL_{i}" for i in range(min(sizes))]
    raise SourceError(f"{adapter}: cannot tell the number of labels (no config.json, no saved head); pass label_names")


def _from_adapter(adapter: Path, target: Path, label_names: list[str] | None) -> dict:
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base_name = PeftConfig.from_pretrained(adapter).base_model_name_or_path
    if not base_name:
        raise SourceError(f"{adapter}/adapter_config.json: base_model_name_or_path is empty")
    base_dir = resolve_model(base_name)
    names = _adapter_labels(adapter, label_names)
    base = _quiet_load(lambda: AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(target)
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    AutoTokenizer.from_pretrained(adapter if has_tokenizer else base_dir).save_pretrained(target)
    return {"kind": "adapter", "base_model": base_name, "merged": True}


def _from_hf(model_dir: Path, target: Path, label_names: list[str] | None) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    if label_names:
        if len(label_names) != model.config.num_labels:
            raise SourceError(f"{model_dir}: label_names has {len(label_names)} names, the model has {model.config.num_labels} labels")
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return {"kind": "hf"}


def write_hf_dir(source: str | Path, target: str | Path, module_class: str | None = None,
                 label_names: list[str] | None = None) -> dict:
    """Write ``source`` as a plain HF classification directory (weights, config with labels, tokenizer).

    Args:
        source: a ``.ckpt`` file of one of our LightningModules, an HF model directory, or a PEFT
            LoRA adapter directory (merged into its base model).
        target: directory to write.
        module_class: LightningModule class for checkpoints that do not record one.
        label_names: class names for adapters without a config, or to rename an HF model's labels.

    Returns:
        What was read: ``kind`` and, where known, ``module_class``, ``base_model``.
    """
    source, target = Path(source), Path(target)
    kind = source_kind(source)
    if kind == "checkpoint":
        return _from_checkpoint(source, target, module_class)
    if kind == "adapter":
        return _from_adapter(source, target, label_names)
    return _from_hf(source, target, label_names)
