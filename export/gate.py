"""The accuracy gate: an int8 model may lose at most ``max_accuracy_drop`` points against fp32."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .runtime import OnnxClassifier

__all__ = ["GateError", "GateResult", "accuracy_gate", "classification_scores", "evaluate", "gate_message", "predict_all"]


class GateError(RuntimeError):
    """The int8 model lost more accuracy than allowed."""


def predict_all(model: OnnxClassifier, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Class index per text, shape (N,), in batches sorted by length (less padding, same result)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    preds = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        preds[idx] = model.predict([texts[i] for i in idx])
    return preds


def classification_scores(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> dict:
    """Accuracy and macro F1 (every class weighted equally; a class never predicted scores 0)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    f1s = []
    for c in range(num_labels):
        tp = int(((preds == c) & (labels == c)).sum())
        fp, fn = int(((preds == c) & (labels != c)).sum()), int(((preds != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": float((preds == labels).mean()), "macro_f1": float(np.mean(f1s))}


def evaluate(model: OnnxClassifier, texts: list[str], labels: list[int], batch_size: int = 32) -> tuple[float, np.ndarray]:
    """Return (accuracy in [0, 1], predictions of shape (N,))."""
    preds = predict_all(model, texts, batch_size)
    return float((preds == np.asarray(labels)).mean()), preds


@dataclass
class GateResult:
    """Accuracies of fp32 and int8 on the same rows, and whether the drop is allowed.

    Args:
        fp32_accuracy: accuracy of the fp32 ONNX model, in [0, 1].
        int8_accuracy: accuracy of the int8 model, in [0, 1].
        drop_points: (fp32 - int8) * 100; negative when int8 is better.
        max_accuracy_drop: the allowed drop, in points.
        agreement: share of rows where both predict the same class.
        n_rows: rows evaluated.
        passed: drop_points <= max_accuracy_drop.
    """

    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    max_accuracy_drop: float
    agreement: float
    n_rows: int
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def accuracy_gate(fp32: OnnxClassifier, int8: OnnxClassifier, texts: list[str], labels: list[int],
                  max_accuracy_drop: float = 1.0, batch_size: int = 32) -> GateResult:
    """Evaluate both models on ``texts`` and compare; the caller decides what a failure does."""
    acc32, p32 = evaluate(fp32, texts, labels, batch_size)
    acc8, p8 = evaluate(int8, texts, labels, batch_size)
    drop = 100.0 * (acc32 - acc8)
    return GateResult(acc32, acc8, drop, max_accuracy_drop, float((p32 == p8).mean()), len(texts),
                      drop <= max_accuracy_drop + 1e-9)


def gate_message(result: GateResult, eval_name: str, where: str, hints: list[str] | None = None) -> str:
    """The one-line failure message; ``hints`` are settings worth trying."""
    tries = ", ".join((hints or []) + ["a larger max_accuracy_drop if the loss is acceptable"])
    return (
        f"accuracy gate failed: int8 accuracy {100 * result.int8_accuracy:.2f}% is {result.drop_points:.2f} points "
        f"below fp32 {100 * result.fp32_accuracy:.2f}% on {eval_name} ({result.n_rows} rows; "
        f"max_accuracy_drop={result.max_accuracy_drop:g}); the rejected model is in {where}. Try: {tries}"
    )
