"""Stream ``predict`` outputs into a CSV of id, text, label name and probability."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Write one CSV row per predicted text, batch by batch.

    Columns: ``id`` (the dataset's row id), ``text``, ``label``, ``score`` and ``prob_<label>`` per
    class. The file appears under its final name only when prediction completes.

    Args:
        output_path: the CSV to write; None writes ``<log_dir>/predictions.csv``.
    """

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_path = output_path
        self._file = None
        self._writer = None
        self.path: Path | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = "predictions.csv" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.csv"
        self.path = Path(self.output_path) if self.output_path else Path(trainer.log_dir or trainer.default_root_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path.with_suffix(".csv.partial"), "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["id", "text", "label", "score", *(f"prob_{n}" for n in pl_module.label_names)])

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        split = trainer.datamodule.splits["predict"]
        for i, label, score, probs in zip(
            prediction["index"].tolist(), prediction["label"], prediction["score"].tolist(), prediction["probs"].tolist()
        ):
            self._writer.writerow([split.ids[i], split.texts[i], label, f"{score:.6f}", *(f"{p:.6f}" for p in probs)])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._file.close()
        os.replace(self.path.with_suffix(".csv.partial"), self.path)
