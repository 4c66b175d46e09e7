"""Knowledge distillation: fine-tuning whose loss step also matches a frozen teacher's soft labels."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from distillery.hub import cache_root
from distillery.teacher import Teacher, check_precision, load_teacher
from distillery.teacher_cache import cache_path, read_cached_logits, teacher_logits

from .classifier import TextClassifier, adamw, count_parameters
from .losses import distillation_loss, kd_loss
from .schedules import LinearWarmupDecay

__all__ = ["DistillationClassifier"]

# Splits whose teacher logits each stage needs: train for the loss, val/test for agreement.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class DistillationClassifier(TextClassifier):
    """A student classifier trained on ``alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE``.

    The student is the usual backbone (``model_name``, optionally shrunk with ``keep_layers``, e.g.
    ``[0, 2, 5]`` of all-MiniLM-L6-v2, or of the teacher's own directory for DistilBERT-style init).
    The teacher reads raw texts with its own tokenizer, so the two may have different vocabularies.
    With ``cache_teacher`` its logits for the training texts are computed once at ``setup`` and
    stored on disk (``distillery.teacher_cache``); training then runs no teacher forward at all.
    Rows labelled -1 (a transfer set without gold labels) train from the teacher alone.

    The teacher is a plain attribute, never a submodule: it stays out of ``state_dict``, checkpoints,
    the optimizer and the DDP wrapper, frozen and in eval mode.

    Args:
        teacher: a fine-tuned HF model directory, a ``.ckpt`` of one of our modules, or a PEFT adapter
            directory (see ``distillery.teacher.load_teacher``).
        model_name: Hub id or directory of the student's pretrained encoder.
        num_labels: number of classes; linked from the datamodule by the CLI.
        label_names: class names; linked from the datamodule. They must match the teacher's.
        optimizer: builds the optimizer from parameter groups.
        scheduler: builds the per-step LR scheduler; None keeps the LR constant.
        classifier_dropout: dropout before the classification head; None keeps the model's.
        keep_layers: build the student from these layer indices of ``model_name``; None keeps all.
        temperature: softmax temperature of the KD term.
        alpha: weight of the KD term in [0, 1]; 0 is plain fine-tuning, 1 ignores gold labels.
        cache_teacher: compute teacher logits once and read them from disk (stage 1, then stage 2);
            False runs the teacher inside every training step (online distillation, for comparison).
        teacher_batch_size: batch size of the teacher's pass over the texts.
        teacher_max_length: truncation length of the teacher's tokenizer.
        teacher_precision: the teacher's forward pass, ``32`` or ``bf16`` (bfloat16 autocast: about 4x
            faster on CPUs with AMX, such as Sapphire Rapids); the cache keeps the two apart.
        teacher_cache_dir: where teacher logits are cached; None uses ``<cache_root>/teacher_logits``.
    """

    def __init__(
        self,
        teacher: str,
        model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        num_labels: int = 2,
        label_names: list[str] | None = None,
        optimizer: OptimizerCallable = adamw,
        scheduler: LRSchedulerCallable | None = LinearWarmupDecay,
        classifier_dropout: float | None = None,
        keep_layers: list[int] | None = None,
        temperature: float = 2.0,
        alpha: float = 0.5,
        cache_teacher: bool = True,
        teacher_batch_size: int = 64,
        teacher_max_length: int = 128,
        teacher_precision: str = "32",
        teacher_cache_dir: str | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        check_precision(teacher_precision, "teacher_precision")  # before any model loads
        super().__init__(model_name, num_labels, label_names, optimizer, scheduler, classifier_dropout, keep_layers)
        # A Teacher is not an nn.Module, so this stays a plain attribute (nothing registers it).
        self._teacher: Teacher | None = None
        self._teacher_logits: dict[str, torch.Tensor] = {}
        self.teacher_info: dict = {}
        self.val_agreement = MulticlassAccuracy(num_labels, average="micro")
        self.test_agreement = MulticlassAccuracy(num_labels, average="micro")

    # -- the teacher --------------------------------------------------------------------------

    def teacher(self) -> Teacher:
        """Load the teacher on first use, frozen, on the training device."""
        if self._teacher is None:
            teacher = load_teacher(self.hparams.teacher, self.hparams.num_labels)
            names = [n.lower() for n in teacher.label_names]
            unnamed = [f"label_{i}" for i in range(teacher.num_labels)]  # a teacher saved without names
            if names not in (unnamed, [n.lower() for n in self.label_names]):
                raise ValueError(
                    f"teacher {teacher.source}: classes {teacher.label_names} differ from the data's {self.label_names}"
                )
            if self._trainer is not None:
                teacher.to(self.trainer.strategy.root_device)
            self._teacher = teacher
            self.teacher_info = {"teacher_source": teacher.source, "num_parameters": teacher.num_parameters}
        return self._teacher

    def teacher_cache_file(self, datamodule, split: str) -> Path:
        """The cache file for one split of ``datamodule``: one per teacher location and data split."""
        root = Path(self.hparams.teacher_cache_dir or cache_root() / "teacher_logits")
        return cache_path(root, self.hparams.teacher, f"{type(datamodule).__name__}-{split}")

    def _compute_split(self, datamodule, split: str, texts: list[str]):
        hp = self.hparams
        return teacher_logits(self.teacher_cache_file(datamodule, split), texts, self.teacher(),
                              hp.teacher_batch_size, hp.teacher_max_length, hp.teacher_precision)

    def _split_logits(self, split: str, texts: list[str]) -> torch.Tensor:
        dm = self.trainer.datamodule
        # Rank zero runs the teacher and writes atomically; the others wait, then read.
        if self.trainer.is_global_zero:
            result = self._compute_split(dm, split, texts)
        self.trainer.strategy.barrier("teacher_cache")
        if not self.trainer.is_global_zero:
            result = read_cached_logits(self.teacher_cache_file(dm, split), texts)
        self.teacher_info = dict(result.meta)
        return result.logits

    def build_teacher_cache(self, datamodule, splits: tuple[str, ...] = ("train", "val")) -> dict:
        """Stage 1 without a Trainer: run the teacher over ``splits`` of a set-up datamodule and cache the logits.

        ``fit`` with the same config then finds every row in the cache. Returns, per split, the cache
        file, whether it was a hit, and how many texts the teacher had to run on.
        """
        report = {}
        for split in (s for s in splits if s in datamodule.splits):
            result = self._compute_split(datamodule, split, datamodule.splits[split].texts)
            report[split] = {"path": str(self.teacher_cache_file(datamodule, split)), "status": result.status,
                             "computed": result.computed, "rows": len(datamodule.splits[split].texts)}
        self._teacher = None
        return report

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if stage not in _STAGE_SPLITS:
            return
        if dm is None or not getattr(dm, "splits", None):
            raise RuntimeError(f"{type(self).__name__} needs a datamodule with text splits (dm.splits['train'].texts)")
        for split in _STAGE_SPLITS[stage]:
            if split not in dm.splits or (split == "train" and not self.hparams.cache_teacher):
                continue
            self._teacher_logits[split] = self._split_logits(split, dm.splits[split].texts)
        if self.hparams.cache_teacher or stage != "fit":
            self._teacher = None  # stage 2 never needs the model: free its memory
        else:
            self.teacher()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        teacher, student = self.teacher_info.get("num_parameters"), count_parameters(self.model)[1]
        if teacher:
            counts = {"teacher_total": teacher, "student_total": student, "teacher_over_student": teacher / student}
            self.param_counts.update(counts)
            rank_zero_info(f"teacher params {teacher:,} vs student params {student:,} ({teacher / student:.2f}x)")
            for logger in self.loggers:
                logger.log_hyperparams({f"params/{k}": v for k, v in counts.items()})
        # Index the table on the device the batches arrive on, without a host sync per step.
        self._teacher_logits = {k: v.to(self.device) for k, v in self._teacher_logits.items()}

    # -- the loss step: the only thing distillation adds -------------------------------------

    def batch_teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher logits (B, C) for a training batch: the cached rows, or a forward pass online."""
        if self.hparams.cache_teacher:
            if "train" not in self._teacher_logits:
                raise RuntimeError("teacher logits for the train split are missing: setup('fit') did not run")
            table = self._teacher_logits["train"]
            return table[batch["index"].to(table.device)]
        texts = self.trainer.datamodule.splits["train"].texts
        rows = [texts[i] for i in batch["index"].tolist()]
        hp = self.hparams
        return self.teacher().logits(rows, len(rows), hp.teacher_max_length, hp.teacher_precision)

    def training_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        teacher = self.batch_teacher_logits(batch).to(logits.device)
        hp = self.hparams
        loss = distillation_loss(logits, teacher, batch["labels"], hp.temperature, hp.alpha)
        with torch.no_grad():
            self.log("train/kd_loss", kd_loss(logits, teacher, hp.temperature), batch_size=logits.shape[0])
        return loss

    # -- agreement with the teacher -----------------------------------------------------------

    def _log_agreement(self, preds: torch.Tensor, batch: dict[str, torch.Tensor], split: str, metric) -> None:
        table = self._teacher_logits.get(split)
        if table is None:
            return
        if table.device != preds.device:
            table = self._teacher_logits[split] = table.to(preds.device)
        metric.update(preds, table[batch["index"]].argmax(-1))
        self.log(f"{split}/agreement", metric, batch_size=preds.shape[0])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        preds = self._eval_step(batch, self.val_metrics, "val")
        self._log_agreement(preds, batch, "val", self.val_agreement)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        preds = self._eval_step(batch, self.test_metrics, "test")
        self.test_report.update(preds, batch["labels"])
        self._log_agreement(preds, batch, "test", self.test_agreement)
