"""Metrics shared by every classifier, and the per-class test report."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

__all__ = ["stage_metrics", "report_metrics", "format_report"]


def stage_metrics(num_labels: int) -> MetricCollection:
    """Accuracy and macro F1, to be cloned per stage with a ``prefix``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_labels, average="micro"),
            "f1": MulticlassF1Score(num_labels, average="macro"),
        }
    )


def report_metrics(num_labels: int) -> MetricCollection:
    """Per-class precision, recall and F1, and the confusion matrix (rows: true, columns: predicted)."""
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_labels, average=None),
            "recall": MulticlassRecall(num_labels, average=None),
            "f1": MulticlassF1Score(num_labels, average=None),
            "support": MulticlassConfusionMatrix(num_labels),
        }
    )


def format_report(values: dict[str, torch.Tensor], label_names: list[str]) -> tuple[str, dict]:
    """Render the report as a text table like scikit-learn's, and as a JSON-ready dict."""
    confusion = values["support"].long()
    support = confusion.sum(dim=1)
    rows, data = [], {"per_class": {}, "confusion_matrix": confusion.tolist(), "labels": label_names}
    width = max(12, *(len(n) for n in label_names))
    rows.append(f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}")
    for i, name in enumerate(label_names):
        p, r, f = (float(values[k][i]) for k in ("precision", "recall", "f1"))
        data["per_class"][name] = {"precision": p, "recall": r, "f1": f, "support": int(support[i])}
        rows.append(f"{name:>{width}} {p:9.4f} {r:9.4f} {f:9.4f} {int(support[i]):9d}")
    acc = float(confusion.diag().sum() / confusion.sum().clamp(min=1))
    macro = [sum(data["per_class"][n][k] for n in label_names) / len(label_names) for k in ("precision", "recall", "f1")]
    data["accuracy"], data["macro"] = acc, dict(zip(("precision", "recall", "f1"), macro))
    rows.append(f"{'accuracy':>{width}} {'':>9} {'':>9} {acc:9.4f} {int(support.sum()):9d}")
    rows.append(f"{'macro avg':>{width}} {macro[0]:9.4f} {macro[1]:9.4f} {macro[2]:9.4f} {int(support.sum()):9d}")
    rows.append("confusion matrix (rows true, columns predicted): " + str(confusion.tolist()))
    return "\n".join(rows), data
