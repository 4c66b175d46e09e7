"""Write the best model as a Hugging Face ``save_pretrained`` directory during training."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from .monitored import MonitoredCallback

__all__ = ["HFModelExport", "replace_dir"]


def replace_dir(write, target: str | Path) -> None:
    """Call ``write(tmp_dir)`` and swap the result into ``target`` by renames.

    A crash at any point leaves either the previous complete directory or the new one, never a
    half-written mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class HFModelExport(MonitoredCallback):
    """After each validation that improves ``monitor``, write the model, tokenizer and label names.

    The directory loads with ``transformers.pipeline("text-classification", model=dirpath)``.

    Args:
        dirpath: output directory; None writes ``<log_dir>/hf_model``.
        monitor: the logged metric that decides "best".
        mode: ``max`` or ``min``.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/acc", mode: str = "max") -> None:
        super().__init__(dirpath, monitor, mode)
        self.written_to: Path | None = None

    def _target(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "hf_model"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = self.improved(trainer)
        if value is None:
            return
        # Every rank resolves the target: trainer.log_dir is a collective (a broadcast).
        target = self._target(trainer)
        if trainer.is_global_zero:
            tokenizer = getattr(trainer.datamodule, "tokenizer", None)
            replace_dir(lambda tmp: pl_module.save_hf(tmp, tokenizer), target)
            self.written_to = target
            rank_zero_info(f"HFModelExport: {self.monitor}={value:.4f}, wrote {target}")
        # Other ranks wait, so nobody reads a directory that is still being written.
        if trainer.world_size > 1:
            trainer.strategy.barrier("hf_export")
