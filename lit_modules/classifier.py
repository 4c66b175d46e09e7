"""Full fine-tuning of a pretrained encoder for text classification."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

from distillery.hub import resolve_model
from distillery.layers import keep_layers

from .metrics import format_report, report_metrics, stage_metrics
from .rng_state import RNG_STATES, capture_rng_states, restore_rng_states

# The checkpoint key naming the module class that wrote it.
WRITTEN_BY = "distillery_module"
from .schedules import LinearWarmupDecay

__all__ = ["TextClassifier", "adamw"]


def adamw(params: Iterable) -> torch.optim.Optimizer:
    """The default optimizer: AdamW at a fine-tuning learning rate (YAML configs set their own)."""
    return torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in module.parameters())


class TextClassifier(L.LightningModule):
    """Sequence classification by fine-tuning every weight of a pretrained encoder.

    Subclasses change one hook: LoRA overrides :meth:`build_backbone`, distillation overrides
    :meth:`training_loss`.

    Args:
        model_name: Hub id or directory of the pretrained encoder (see ``distillery.hub.resolve_model``).
        num_labels: number of classes; linked from the datamodule by the CLI.
        label_names: class names, written into the model's ``id2label``; linked from the datamodule.
        optimizer: builds the optimizer from parameter groups (AdamW, lr 5e-5 by default).
        scheduler: builds the per-step LR scheduler; ``LinearWarmupDecay`` learns the run's length
            from the Trainer. None keeps the LR constant.
        classifier_dropout: dropout before the classification head; None keeps the model's.
        keep_layers: build a smaller encoder from these layer indices of the pretrained one
            (DistilBERT-style initialisation, e.g. ``[0, 2, 5]``); None keeps every layer.
    """

    def __init__(
        self,
        model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        num_labels: int = 2,
        label_names: list[str] | None = None,
        optimizer: OptimizerCallable = adamw,
        scheduler: LRSchedulerCallable | None = LinearWarmupDecay,
        classifier_dropout: float | None = None,
        keep_layers: list[int] | None = None,
    ) -> None:
        super().__init__()
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"label_names has {len(label_names)} names but num_labels={num_labels}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_names = list(label_names or [f"LABEL_{i}" for i in range(num_labels)])
        # from_pretrained returns eval mode, and Lightning keeps module modes as it finds them:
        # without this, dropout would be off during training.
        self.model = self.build_backbone().train()
        self.configure_metrics()

    # -- construction -------------------------------------------------------------------------

    def backbone_kwargs(self) -> dict:
        """Keyword arguments for ``from_pretrained`` that carry the label names into the config."""
        kwargs = dict(
            num_labels=self.hparams.num_labels,
            id2label=dict(enumerate(self.label_names)),
            label2id={n: i for i, n in enumerate(self.label_names)},
        )
        if self.hparams.classifier_dropout is not None:
            kwargs["classifier_dropout"] = self.hparams.classifier_dropout
        return kwargs

    def build_backbone(self) -> nn.Module:
        """Load the pretrained encoder with a fresh classification head."""
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        # "Some weights were newly initialized" is expected here: the head is new.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                resolve_model(self.hparams.model_name), **self.backbone_kwargs()
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        if self.hparams.keep_layers is not None:
            keep_layers(model, self.hparams.keep_layers)
        return model

    def configure_metrics(self) -> None:
        metrics = stage_metrics(self.hparams.num_labels)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Mean loss over rows as a metric: exact across DDP ranks whose shards differ in size.
        self.eval_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.test_report = report_metrics(self.hparams.num_labels)

    # -- steps --------------------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return logits of shape (B, num_labels)."""
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def training_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of one training batch; distillation overrides this."""
        if (batch["labels"] < 0).any():
            raise ValueError(
                f"{type(self).__name__} cannot train on rows without a gold label (label -1, e.g. from "
                "data.transfer_path); use lit_modules.distill.DistillationClassifier, whose teacher labels them"
            )
        return F.cross_entropy(logits, batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = self.training_loss(logits, batch)
        n = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        labelled = batch["labels"] >= 0  # transfer sets may carry unlabelled rows
        if labelled.any():
            self.train_metrics.update(logits[labelled].argmax(-1), batch["labels"][labelled])
            self.log_dict(self.train_metrics, batch_size=n)
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics, stage: str) -> torch.Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        preds = logits.argmax(-1)
        metrics.update(preds, batch["labels"])
        self.eval_loss[stage].update(loss, weight=batch["labels"].shape[0])
        self.log(f"{stage}/loss", self.eval_loss[stage], prog_bar=True, batch_size=batch["labels"].shape[0])
        self.log_dict(metrics, prog_bar=True, batch_size=batch["labels"].shape[0])
        return preds

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        preds = self._eval_step(batch, self.test_metrics, "test")
        self.test_report.update(preds, batch["labels"])

    def on_test_epoch_end(self) -> None:
        text, data = format_report(self.test_report.compute(), self.label_names)
        self.test_report.reset()
        for name, row in data["per_class"].items():
            for key in ("precision", "recall", "f1"):
                self.log(f"test/{key}_{name}", row[key])
        self.last_test_report = data
        rank_zero_info("Per-class report on the test split:\n" + text)
        log_dir = self.trainer.log_dir if self.trainer.logger is not None else None
        if log_dir and self.trainer.is_global_zero:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "test_report.json").write_text(json.dumps(data, indent=2))

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        """Return per row: ``index``, ``label`` (a name), ``score`` (its probability) and ``probs`` (B, C)."""
        probs = self(batch).float().softmax(-1)
        score, idx = probs.max(-1)
        return {
            "index": batch["index"],
            "label": [self.label_names[i] for i in idx.tolist()],
            "score": score,
            "probs": probs,
        }

    # -- training set-up ----------------------------------------------------------------------

    def parameter_counts(self) -> tuple[int, int]:
        """Return (trainable, total) parameters; LoRA leaves out peft's inactive head copies."""
        return count_parameters(self)

    def on_fit_start(self) -> None:
        trainable, total = self.parameter_counts()
        self.param_counts = {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total}
        rank_zero_info(
            f"{type(self).__name__}: trainable params {trainable:,} || all params {total:,} || "
            f"trainable% {self.param_counts['trainable_pct']:.4f}"
        )
        for logger in self.loggers:
            logger.log_hyperparams({f"params/{k}": v for k, v in self.param_counts.items()})

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                # BERT recipe: no weight decay on biases and LayerNorm weights.
                (no_decay if p.ndim < 2 else decay).append(p)
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.scheduler_factory is None:
            return optimizer
        # A schedule that needs the run's length gets it in on_train_start: reading
        # trainer.estimated_stepping_batches here would build the train loader before Lightning
        # restores a checkpoint's datamodule state, and a mid-epoch resume would restart the epoch.
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip as Lightning does, except that bf16-mixed may clip a fused optimizer.

        Lightning refuses to clip any optimizer that "handles unscaling" (fused AdamW) under mixed
        precision, a guard for fp16's GradScaler. bf16 autocast has no scaler: the gradients are the
        true ones, so clipping them before the fused step is exact.
        """
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.scaler is None and gradient_clip_val:
            algorithm = GradClipAlgorithmType((gradient_clip_algorithm or "norm").lower())
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_start(self) -> None:
        for config in self.trainer.lr_scheduler_configs:
            if getattr(config.scheduler, "total_steps", 0) is None:
                config.scheduler.set_total_steps(int(self.trainer.estimated_stepping_batches))

    # -- exact resume -------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the global RNG states (the next steps' dropout masks and shuffles draw from them) and the class."""
        checkpoint[RNG_STATES] = capture_rng_states()
        checkpoint[WRITTEN_BY] = f"{type(self).__module__}.{type(self).__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of an incompatible module; keep the RNG states until training restarts."""
        here, written_by = f"{type(self).__module__}.{type(self).__qualname__}", checkpoint.get(WRITTEN_BY)
        # Another class is fine when its weights fit (a distilled student validates as a TextClassifier).
        if written_by not in (None, here) and set(checkpoint["state_dict"]) != set(self.state_dict()):
            raise ValueError(
                f"checkpoint: written by {written_by}, whose weights do not fit {here}; "
                f"pass --model.class_path={written_by}"
            )
        if self._trainer is not None and self.trainer.state.fn == "fit":
            self._rng_to_restore = checkpoint.get(RNG_STATES)

    def _restore_rng(self) -> None:
        rng, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if rng:
            restore_rng_states(rng)

    def on_train_epoch_start(self) -> None:
        # Resuming at an epoch boundary: restore here, not on load. Lightning creates the train
        # iterator twice (in setup_data, then for the new epoch), and the epoch's shuffle draws
        # from the RNG after this hook, as in an uninterrupted run.
        self._restore_rng()

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Resuming mid-epoch: Lightning skips on_train_epoch_start, so the first batch restores
        # (the data order is restored by the datamodule's state, see docs/distributed.md).
        self._restore_rng()

    # -- export -------------------------------------------------------------------------------

    def hf_model(self) -> nn.Module:
        """The plain ``transformers`` model to save; LoRA returns a merged copy."""
        return self.model

    def save_hf(self, directory: str | Path, tokenizer=None) -> None:
        """Write a ``save_pretrained`` directory with label names (and the tokenizer when given)."""
        model = self.hf_model()
        model.config.id2label = dict(enumerate(self.label_names))
        model.config.label2id = {n: i for i, n in enumerate(self.label_names)}
        model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
