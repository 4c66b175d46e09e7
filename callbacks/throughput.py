"""Steady-state training throughput, measured the way the peer benchmark measures it."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["TrainThroughput"]


class TrainThroughput(L.Callback):
    """Samples/s over steps ``warmup_steps+1 .. N`` (end of step ``warmup_steps`` to end of step N).

    This matches ``../shared/bench/peer_hf_trainer.py`` so the two can be compared. Validation time
    inside the window is excluded. Also reports real and padded tokens/s, the fit's wall time and
    peak RSS, logs ``train/samples_per_s`` and writes a JSON.

    Under DDP the samples and tokens are summed over all ranks (the global rate, over rank zero's
    window), ``peak_rss_mib`` is rank zero's and ``peak_rss_mib_all_ranks`` the sum over ranks: what
    the whole job holds on one machine.

    Args:
        warmup_steps: steps excluded from the steady-state window.
        output_path: JSON to write at the end of fit; None writes ``<log_dir>/throughput.json``.
    """

    def __init__(self, warmup_steps: int = 10, output_path: str | None = None) -> None:
        self.warmup_steps = warmup_steps
        self.output_path = output_path
        self.result: dict = {}
        self._t0: float | None = None
        self._paused = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()
        self._steps = 0
        self._t0 = None
        self._samples = self._real = self._padded = 0
        self._paused = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._steps += 1
        if self._steps == self.warmup_steps:
            self._t0 = now
        elif self._steps > self.warmup_steps:
            ids = batch["input_ids"]
            self._samples += ids.shape[0]
            self._padded += ids.numel()
            self._real += int(batch["attention_mask"].sum())
            self._last = now

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._t0 is not None and not trainer.sanity_checking and trainer.state.fn == "fit":
            self._paused += time.perf_counter() - self._val_start

    def on_fit_end(self, trainer, pl_module) -> None:
        wall = time.perf_counter() - self._fit_start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {"steps": self._steps, "fit_wall_s": wall, "peak_rss_mib": rss, "world_size": trainer.world_size}
        if trainer.world_size > 1:  # a collective: every rank takes part
            import torch

            totals = trainer.strategy.reduce(torch.tensor([self._samples, self._real, self._padded, rss], dtype=torch.float64),
                                             reduce_op="sum")
            self._samples, self._real, self._padded = (int(v) for v in totals[:3].tolist())
            result["peak_rss_mib_all_ranks"] = float(totals[3])
        if self._samples:
            span = self._last - self._t0 - self._paused
            result.update(
                steady_samples_per_s=self._samples / span,
                steady_real_tokens_per_s=self._real / span,
                steady_padded_tokens_per_s=self._padded / span,
                mean_padded_len=self._padded / self._samples,
                mean_real_len=self._real / self._samples,
                window_steps=self._steps - self.warmup_steps,
            )
        self.result = result
        rank_zero_info("TrainThroughput: " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))
        # Every rank resolves the path: trainer.log_dir is a collective (a broadcast).
        path = Path(self.output_path) if self.output_path else Path(trainer.log_dir or trainer.default_root_dir) / "throughput.json"
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2))
