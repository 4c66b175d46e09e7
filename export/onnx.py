"""ONNX fp32 export through optimum, and a parity check against PyTorch on real sentences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtime import OnnxClassifier

__all__ = ["FALLBACK_TEXTS", "ParityError", "ParityReport", "check_parity", "export_onnx"]

# Used only when neither texts nor an evaluation file are given: a few ordinary sentences of different
# lengths, so that padding and attention masks are exercised.
FALLBACK_TEXTS = [
    "the service was quick and the staff were friendly",
    "it broke after two days",
    "an average experience , nothing special but nothing wrong either , and i would probably go back",
    "no",
    "the update fixed the crashes but the menus are still slow to open on older machines",
    "great",
]


class ParityError(RuntimeError):
    """ONNX logits differ from PyTorch's by more than the tolerance."""


@dataclass
class ParityReport:
    """How closely the ONNX model reproduces PyTorch.

    Args:
        max_abs_diff: largest absolute logit difference over all texts, batched and one by one.
        label_agreement: share of texts with the same argmax.
        n_texts: texts compared.
        atol: the tolerance checked.
    """

    max_abs_diff: float
    label_agreement: float
    n_texts: int
    atol: float


def export_onnx(hf_dir: str | Path, out_dir: str | Path, opset: int = 18) -> Path:
    """Export an HF sequence classifier to ``out_dir/model.onnx`` with its config and tokenizer.

    Inputs are named ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model has
    them), the output ``logits``; batch and sequence axes are dynamic. The directory loads with
    ``ORTModelForSequenceClassification.from_pretrained(out_dir)``.
    """
    if opset < 17:
        raise ValueError(f"opset {opset}: need 17 or newer (LayerNormalization is a single op from 17)")
    from optimum.exporters.onnx import main_export

    # optimum's own validation uses random inputs; check_parity below uses real sentences instead.
    main_export(str(hf_dir), str(out_dir), task="text-classification", opset=opset, do_validation=False)
    return Path(out_dir) / "model.onnx"


def _torch_logits(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return model(**enc).logits.float().numpy()


def check_parity(hf_dir: str | Path, onnx_dir: str | Path, texts: list[str], atol: float = 1e-4,
                 max_length: int = 128, batch_size: int = 16) -> ParityReport:
    """Compare ONNX and PyTorch logits on ``texts``, one at a time and in padded batches.

    Raises:
        ParityError: naming the largest difference, the tolerance and the text where it happened.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not texts:
        raise ValueError("check_parity needs at least one text")
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    onnx = OnnxClassifier(onnx_dir, max_length=max_length)
    worst, worst_text, agree = 0.0, texts[0], 0
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        # Batched (padding, masks) and single (no padding) inputs take different paths through attention.
        for group in [chunk] + [[t] for t in chunk[:4]]:
            ref, got = _torch_logits(model, tokenizer, group, max_length), onnx.logits(group)
            diff = np.abs(ref - got).max(axis=-1)
            if diff.max() > worst:
                worst, worst_text = float(diff.max()), group[int(diff.argmax())]
            if len(group) > 1:
                agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
    report = ParityReport(worst, agree / len(texts), len(texts), atol)
    if worst > atol:
        raise ParityError(
            f"ONNX parity failed: max |logit difference| {worst:.3g} > atol {atol:g} "
            f"(on {worst_text[:60]!r}; {len(texts)} texts compared, {onnx.path})"
        )
    return report
