"""Write LoRA adapters as small PEFT directories that plain peft loads, best and last."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from .hf_export import replace_dir
from .monitored import MonitoredCallback

__all__ = ["AdapterCheckpoint", "LABELS_FILE"]

# Label names live in the base model's config, which an adapter directory does not hold.
LABELS_FILE = "labels.json"


class AdapterCheckpoint(MonitoredCallback):
    """Keep ``best/`` (by ``monitor``) and ``last/`` adapter directories in PEFT format.

    Each directory holds ``adapter_config.json`` and ``adapter_model.safetensors`` (the LoRA
    weights and the fully trained head), the tokenizer, and ``labels.json`` (label names and the
    base model). It is megabytes where the full model is hundreds, and loads outside this project::

        base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=len(names), id2label=...)
        model = PeftModel.from_pretrained(base, "best")

    ``best/`` is rewritten after each validation that improves ``monitor``; ``last/`` at the end of
    every training epoch. Rank zero writes, into a temporary directory swapped in by rename, so a
    crash mid-write leaves the previous adapter intact.

    Args:
        dirpath: parent of ``best/`` and ``last/``; None uses ``<log_dir>/adapter``.
        monitor: the logged metric that decides "best".
        mode: ``max`` or ``min``.
    """

    def root(self, trainer: L.Trainer) -> Path:
        """The directory holding ``best/`` and ``last/``."""
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "adapter"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from peft import PeftModel

        if not isinstance(getattr(pl_module, "model", None), PeftModel):
            raise TypeError(
                f"AdapterCheckpoint: {type(pl_module).__name__}.model is not a peft model; "
                "use it with lit_modules.lora.LoRAClassifier"
            )

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, info: dict) -> Path:
        """Atomically write the adapter, tokenizer and labels into ``<root>/<name>``; rank zero only."""
        target = self.root(trainer) / name
        if trainer.is_global_zero:
            labels = {
                "label_names": list(pl_module.label_names),
                "base_model": pl_module.hparams.model_name,
                "keep_layers": pl_module.hparams.get("keep_layers"),
                **info,
            }
            tokenizer = getattr(trainer.datamodule, "tokenizer", None) if trainer.datamodule is not None else None

            def write(tmp: Path) -> None:
                pl_module.model.save_pretrained(tmp)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                (tmp / LABELS_FILE).write_text(json.dumps(labels, indent=2))

            replace_dir(write, target)
        # Other ranks wait, so nobody reads a directory that is still being written.
        if trainer.world_size > 1:
            trainer.strategy.barrier("adapter_checkpoint")
        return target

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = self.improved(trainer)
        if value is None:
            return
        info = {"monitor": self.monitor, "value": value, "epoch": trainer.current_epoch, "step": trainer.global_step}
        target = self.write(trainer, pl_module, "best", info)
        rank_zero_info(f"AdapterCheckpoint: {self.monitor}={value:.4f}, wrote {target}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, "last", {"epoch": trainer.current_epoch, "step": trainer.global_step})
