"""Shared bookkeeping of callbacks that write something whenever a monitored metric improves."""

from __future__ import annotations

import lightning as L

__all__ = ["MonitoredCallback"]


class MonitoredCallback(L.Callback):
    """Tracks the best value of ``monitor``; its state travels in Lightning checkpoints.

    Args:
        dirpath: where the subclass writes; None lets it choose a folder under the log directory.
        monitor: the logged metric that decides "best".
        mode: ``max`` or ``min``.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/acc", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"{type(self).__name__}: mode must be 'max' or 'min', got {mode!r}")
        self.dirpath = dirpath
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None

    @property
    def state_key(self) -> str:
        # Two instances (say, one per metric) keep separate state in a Lightning checkpoint.
        return self._generate_state_key(dirpath=self.dirpath, monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")

    def improved(self, trainer: L.Trainer) -> float | None:
        """After a fit-time validation: the monitored value if it beats the best so far (now the best), else None.

        Raises:
            KeyError: the monitored metric was not logged, with the names that were.
        """
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return None
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"{type(self).__name__}: metric '{self.monitor}' was not logged; logged: {sorted(trainer.callback_metrics)}"
            )
        value = float(value)
        if self.best is not None and (value <= self.best if self.mode == "max" else value >= self.best):
            return None
        self.best = value
        return value
