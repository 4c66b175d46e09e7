"""LoRA fine-tuning: peft adapters on the attention projections, the classification head trained in full."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from .classifier import TextClassifier
from .lora_targets import attention_targets, head_modules
from .schedules import LinearWarmupDecay

__all__ = ["LoRAClassifier", "lora_adamw"]

# The checkpoint key that marks a checkpoint without the frozen base.
FROZEN_BASE = "lora_frozen_base"


def lora_adamw(params: Iterable) -> torch.optim.Optimizer:
    """The default optimizer: AdamW at a LoRA learning rate, 10x full fine-tuning's (YAML configs set their own)."""
    return torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)


def _base_fingerprint(module: nn.Module) -> float:
    """Sum of |w| over the pretrained weights that LoRA adapts; tells one base model from another."""
    with torch.no_grad():
        return sum(float(p.detach().double().abs().sum()) for n, p in module.named_parameters() if ".base_layer." in n)


class LoRAClassifier(TextClassifier):
    """Sequence classification by LoRA: low-rank adapters on the chosen projections of a frozen encoder.

    Only :meth:`build_backbone` differs from full fine-tuning: it wraps the pretrained model with
    peft's ``get_peft_model``. The newly initialised head layers train in full through peft's
    ``modules_to_save``. Lightning checkpoints hold the trainable weights, the optimizer, scheduler,
    loop and RNG state, but not the frozen base, which is rebuilt from ``model_name`` on load.
    :meth:`hf_model` returns a merged copy, so exports are plain ``transformers`` models.

    Args:
        model_name: Hub id or directory of the pretrained encoder (see ``distillery.hub.resolve_model``).
        num_labels: number of classes; linked from the datamodule by the CLI.
        label_names: class names, written into the model's ``id2label``; linked from the datamodule.
        optimizer: builds the optimizer from the trainable parameters (AdamW, lr 5e-4 by default).
        scheduler: builds the per-step LR scheduler; None keeps the LR constant.
        classifier_dropout: dropout before the classification head; None keeps the model's.
        keep_layers: build a smaller encoder from these layer indices before adding adapters.
        r: rank of each LoRA update.
        lora_alpha: scaling numerator; updates are scaled by ``lora_alpha / r``.
        lora_dropout: dropout on the input of each LoRA branch.
        target_modules: ``auto`` picks the attention projections by ``model_type``
            (see ``lit_modules.lora_targets.ATTENTION_TARGETS``); a list names modules exactly
            (e.g. ``[query, value]``); any other string is a regular expression that peft
            matches against full module names.
        bias: which biases train: ``none``, ``all`` or ``lora_only`` (those of adapted layers).
        layers_to_transform: adapt only these encoder layers (indices into the encoder, after
            ``keep_layers``); None adapts every layer. Adapting only the top layers also stops the
            backward pass there, since nothing below them trains: e.g. ``[3, 4, 5]`` of MiniLM's six.
    """

    def __init__(
        self,
        model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        num_labels: int = 2,
        label_names: list[str] | None = None,
        optimizer: OptimizerCallable = lora_adamw,
        scheduler: LRSchedulerCallable | None = LinearWarmupDecay,
        classifier_dropout: float | None = None,
        keep_layers: list[int] | None = None,
        r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        target_modules: list[str] | str = "auto",
        bias: Literal["none", "all", "lora_only"] = "none",
        layers_to_transform: list[int] | None = None,
    ) -> None:
        # save_hyperparameters in the base collects these arguments too, before build_backbone runs.
        super().__init__(
            model_name=model_name,
            num_labels=num_labels,
            label_names=label_names,
            optimizer=optimizer,
            scheduler=scheduler,
            classifier_dropout=classifier_dropout,
            keep_layers=keep_layers,
        )
        self._rng_to_restore: dict | None = None  # set by on_load_checkpoint, used at the next epoch start

    # -- construction -------------------------------------------------------------------------

    def build_backbone(self) -> nn.Module:
        """Load the pretrained classifier and wrap it with LoRA adapters; returns a ``PeftModel``."""
        from peft import LoraConfig, TaskType, get_peft_model

        model = super().build_backbone()
        hp = self.hparams
        targets = attention_targets(model) if hp.target_modules == "auto" else hp.target_modules
        # peft's SEQ_CLS task already trains "classifier" and "score" in full; add the other new
        # head layers (DeBERTa-v2's pooler) so that none of them stays frozen at its random init.
        extra = [m for m in head_modules(model) if m not in ("classifier", "score")]
        layers = hp.layers_to_transform
        if layers is not None:
            n = model.config.num_hidden_layers
            if isinstance(targets, str):
                raise ValueError("layers_to_transform: needs target_modules as a list or auto, not a regular expression")
            if not layers or any(not 0 <= i < n for i in layers):
                raise ValueError(f"layers_to_transform: {layers} must be non-empty indices in [0, {n}) of the encoder")
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=hp.r,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules=targets,
            bias=hp.bias,
            modules_to_save=extra or None,
            layers_to_transform=list(layers) if layers is not None else None,
        )
        peft_model = get_peft_model(model, config)
        # Saved adapters name the base as the user did (a Hub id), not this machine's cache path.
        peft_model.peft_config["default"].base_model_name_or_path = hp.model_name
        return peft_model

    def parameter_counts(self) -> tuple[int, int]:
        """Return (trainable, total) parameters of the network as it computes.

        peft keeps an inactive copy of every fully trained head module (``original_module``) to
        be able to switch adapters off; it is part of neither count. ``PeftModel``'s own
        ``print_trainable_parameters`` counts it in the total.
        """
        used = [p for n, p in self.named_parameters() if ".original_module." not in n]
        return sum(p.numel() for p in used if p.requires_grad), sum(p.numel() for p in used)

    # -- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable weights (the base records the RNG state for an exact resume)."""
        super().on_save_checkpoint(checkpoint)
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        frozen = [k for k in state if k not in trainable]
        for k in frozen:
            del state[k]
        checkpoint[FROZEN_BASE] = {"keys": len(frozen), "fingerprint": _base_fingerprint(self)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Put the frozen base back into an adapter-only checkpoint."""
        super().on_load_checkpoint(checkpoint)
        if FROZEN_BASE in checkpoint:
            saved = checkpoint[FROZEN_BASE]["fingerprint"]
            here = _base_fingerprint(self)
            if abs(saved - here) > 1e-6 * max(1.0, abs(saved)):
                raise ValueError(
                    f"checkpoint: its adapters were trained on another base model than model_name="
                    f"{self.hparams.model_name!r} (fingerprint {saved:.6g} != {here:.6g})"
                )
            # The frozen weights are the ones just loaded from model_name. Filling them in keeps
            # strict loading, which still catches missing or unexpected adapter and head keys.
            trainable = {n for n, p in self.named_parameters() if p.requires_grad}
            frozen = {k: v for k, v in self.state_dict().items() if k not in trainable}
            checkpoint["state_dict"] = {**frozen, **checkpoint["state_dict"]}

    # -- export -------------------------------------------------------------------------------

    def hf_model(self) -> nn.Module:
        """A merged copy: adapters folded into the base weights, peft's wrappers gone.

        The copy leaves the training model untouched: merging in place and unmerging later
        would perturb the frozen weights by rounding.
        """
        return copy.deepcopy(self.model).merge_and_unload()
