"""Load a frozen classifier to distil from: an HF directory, one of our Lightning checkpoints, or a LoRA adapter.

A teacher brings its own tokenizer and is only ever asked for logits of raw texts, so it may use a
different vocabulary from the student.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from distillery.hub import resolve_model
from distillery.layers import keep_layers

__all__ = ["PRECISIONS", "Teacher", "check_precision", "load_teacher"]

PRECISIONS = ("32", "bf16")  # the teacher's forward pass: float32, or bfloat16 autocast


def check_precision(precision: str, field: str = "precision") -> None:
    """Raise a one-line ValueError naming ``field`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"{field} must be one of {PRECISIONS}, got {precision!r}")


@dataclass(eq=False)
class Teacher:
    """A sequence classifier and its tokenizer, used for inference only.

    Args:
        model: a ``transformers`` sequence classification model.
        tokenizer: the tokenizer the model was trained with.
        source: where it was loaded from (for messages and cache names).
        label_names: class names in logit order.
    """

    model: nn.Module
    tokenizer: object
    source: str = ""
    label_names: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> "Teacher":
        self.model.to(device)
        return self

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the weights, the config and the vocabulary: equal iff the teacher computes the same logits."""
        h = hashlib.sha256()
        volatile = ("_name_or_path", "transformers_version", "_commit_hash")  # where and when, not what
        config = {k: v for k, v in self.model.config.to_dict().items() if k not in volatile}
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        tok = self.tokenizer
        h.update(json.dumps([type(tok).__name__, sorted(tok.get_vocab().items())]).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        return h.hexdigest()

    @torch.inference_mode()
    def logits(
        self, texts: list[str], batch_size: int = 64, max_length: int = 128, precision: str = "32"
    ) -> torch.Tensor:
        """Return float32 logits of shape (N, num_labels) on the CPU, in the order of ``texts``.

        Texts are batched by length (less padding); the model's train/eval mode is restored afterwards,
        so this also serves live models. ``precision="bf16"`` runs the matmuls under bfloat16 autocast
        (about 4x faster on CPUs with AMX; logits move by about 1e-2).
        """
        check_precision(precision, "teacher precision")
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.num_labels)
        n_batches = (len(texts) + batch_size - 1) // batch_size
        step = max(1, n_batches // 10)
        try:
            for b, start in enumerate(range(0, len(texts), batch_size)):
                rows = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in rows], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
                )
                # Only ids and mask: some tokenizers emit token_type_ids that other architectures reject.
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = self.model(
                        input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
                    ).logits
                out[rows] = logits.float().cpu()
                if n_batches >= 20 and (b + 1) % step == 0:
                    done = min(start + batch_size, len(texts))
                    rank_zero_info(f"teacher {self.source}: {done:,}/{len(texts):,} texts")
        finally:
            self.model.train(was_training)
        return out


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _label_names(model: nn.Module) -> list[str]:
    id2label = model.config.id2label or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(model.config.num_labels)]


def _from_hf_dir(directory: str) -> Teacher:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(directory, output_loading_info=True)
    if info["missing_keys"]:
        # A fresh random head would make the "teacher" a coin flip; refuse rather than distil noise.
        raise ValueError(
            f"teacher {directory}: not a fine-tuned classifier, weights missing from it: {info['missing_keys'][:4]}"
        )
    return Teacher(model, AutoTokenizer.from_pretrained(directory), directory, _label_names(model))


def _from_checkpoint(path: Path) -> Teacher:
    from transformers import AutoTokenizer

    from lit_modules.classifier import TextClassifier

    # The CLI records the module's class path; import it so Lightning may instantiate that subclass.
    # Only our own modules: a checkpoint must not choose which code gets imported.
    hparams = torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("hyper_parameters", {})
    cls = TextClassifier
    if hparams.get("_class_path"):
        module_name, name = hparams["_class_path"].rsplit(".", 1)
        if module_name.split(".")[0] != "lit_modules":
            raise ValueError(f"teacher {path}: checkpoint of {hparams['_class_path']}, expected a lit_modules class")
        cls = getattr(importlib.import_module(module_name), name)
    if not issubclass(cls, TextClassifier):
        raise ValueError(f"teacher {path}: checkpoint of {cls.__name__}, expected a TextClassifier subclass")
    module = cls.load_from_checkpoint(path, map_location="cpu")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(module.hparams.model_name))
    return Teacher(module.hf_model(), tokenizer, str(path), list(module.label_names))


def _from_adapter(directory: Path, num_labels: int | None) -> Teacher:
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    adapter = json.loads((directory / "adapter_config.json").read_text())
    base_name = adapter.get("base_model_name_or_path")
    if not base_name:
        raise ValueError(f"teacher {directory / 'adapter_config.json'}: no base_model_name_or_path")
    base = resolve_model(base_name)
    # callbacks.AdapterCheckpoint writes the label names and any layer selection of the base beside
    # the adapter (an adapter directory holds no model config); without them, use the base's config.
    info = json.loads((directory / "labels.json").read_text()) if (directory / "labels.json").is_file() else {}
    names = info.get("label_names")
    if names:
        labels = {"num_labels": len(names), "id2label": dict(enumerate(names))}
        labels["label2id"] = {n: i for i, n in enumerate(names)}
    else:
        labels = {"num_labels": num_labels} if num_labels else {}
    config = AutoConfig.from_pretrained(base, **labels)
    model = AutoModelForSequenceClassification.from_pretrained(base, config=config, ignore_mismatched_sizes=True)
    if info.get("keep_layers"):
        keep_layers(model, info["keep_layers"])
    model = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
    tok_dir = directory if (directory / "tokenizer_config.json").is_file() else base
    return Teacher(model, AutoTokenizer.from_pretrained(tok_dir), str(directory), _label_names(model))


def load_teacher(source: str, num_labels: int | None = None) -> Teacher:
    """Load a frozen, eval-mode teacher.

    Args:
        source: an HF model directory or Hub id (``save_pretrained`` of a fine-tuned classifier), a
            ``.ckpt`` written by training one of our modules, or a PEFT adapter directory
            (``adapter_config.json``; its ``base_model_name_or_path`` goes through ``resolve_model``).
        num_labels: the student's class count; a teacher with another count is an error.

    Raises:
        FileNotFoundError, ValueError: one line naming the source and what is wrong with it.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ValueError(f"teacher {path}: a file must be a Lightning .ckpt; else give a model or adapter dir")
        teacher = _from_checkpoint(path)
    elif (path / "adapter_config.json").is_file():
        teacher = _from_adapter(path, num_labels)
    else:
        teacher = _from_hf_dir(resolve_model(source))
    if num_labels is not None and teacher.num_labels != num_labels:
        raise ValueError(f"teacher {source}: predicts {teacher.num_labels} classes, the student {num_labels}")
    _freeze(teacher.model)
    return teacher
