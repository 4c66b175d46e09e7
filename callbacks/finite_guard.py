"""Stop a run at the first non-finite loss, before it can reach the weights or a checkpoint."""

from __future__ import annotations

import lightning as L
import torch

__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and batch."""


class StopOnNonFiniteLoss(L.Callback):
    """Raise before ``backward`` when the loss is NaN or ±inf.

    Raising before the backward pass means the optimizer never applies the bad step, and no
    checkpoint is written after it: the last good ``last.ckpt`` stays what it was, ready for
    ``--ckpt_path``. The message names the global step, the batch index and the rows' dataset ids.
    """

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch, self._batch_idx = batch, batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        rows = ""
        index = self._batch.get("index") if isinstance(self._batch, dict) else None
        split = getattr(getattr(trainer, "datamodule", None), "splits", {}).get("train")
        if index is not None and split is not None:
            ids = [split.ids[i] for i in index.tolist()]
            rows = f", rows {ids[:8]}{' ...' if len(ids) > 8 else ''}"
        raise NonFiniteLossError(
            f"non-finite training loss ({loss.item()}) at global step {trainer.global_step}, epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx}{rows}; stopped before backward, the last saved checkpoint is intact"
        )
