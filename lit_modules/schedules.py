"""Learning-rate schedules that need the run's length, which only the Trainer knows."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LinearWarmupDecay"]


class LinearWarmupDecay(LambdaLR):
    """Linear warm-up from 0 to the base LR, then linear decay to 0 (BERT's schedule).

    Args:
        optimizer: the wrapped optimizer.
        warmup_fraction: share of all steps spent warming up.
        total_steps: optimizer steps in the run; None lets the LightningModule fill in
            ``trainer.estimated_stepping_batches`` before the first step.
    """

    def __init__(self, optimizer: Optimizer, warmup_fraction: float = 0.06, total_steps: int | None = None) -> None:
        self.warmup_fraction = warmup_fraction
        self.total_steps = total_steps
        super().__init__(optimizer, self._factor)

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the run's length and re-apply the current step's LR."""
        self.total_steps = total_steps
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * self._factor(self.last_epoch)

    def _factor(self, step: int) -> float:
        total = self.total_steps or 1
        warmup = max(1, int(total * self.warmup_fraction))
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
