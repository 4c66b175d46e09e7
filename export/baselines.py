"""The predictors the benchmark compares the lean ONNX path with: PyTorch eager and optimum's ORTModel.

Each has the interface of :class:`export.runtime.OnnxClassifier` that the benchmark needs:
``encode(texts)`` (tokenize), ``run(inputs)`` (model only, returns (B, C) logits as numpy) and
``predict(texts)`` (end to end: tokenize, run, argmax).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["OptimumClassifier", "TorchClassifier"]


class TorchClassifier:
    """PyTorch eager fp32 over an HF directory, under ``inference_mode``.

    Args:
        model_dir: ``save_pretrained`` directory with a tokenizer.
        threads: ``torch.set_num_threads``; None leaves PyTorch's setting.
        max_length: longest token sequence.
    """

    def __init__(self, model_dir: str | Path, threads: int | None = None, max_length: int = 128) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.max_length = max_length

    def encode(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def run(self, inputs: dict) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(**inputs).logits.numpy()

    def predict(self, texts: list[str]) -> np.ndarray:
        # The whole call under inference_mode, as a user would write it.
        with self.torch.inference_mode():
            return self.model(**self.encode(texts)).logits.argmax(-1).numpy()


class OptimumClassifier:
    """optimum's ``ORTModelForSequenceClassification`` called with torch tensors, as in optimum's docs
    and ``shared/bench/peer_ort_latency.py``: the reference that the lean path must not be slower than.

    Args:
        model_dir: exported directory.
        file_name: the ONNX file in it; None lets optimum choose.
        threads: intra-op threads.
        max_length: longest token sequence.
    """

    def __init__(self, model_dir: str | Path, file_name: str | None = None, threads: int | None = None,
                 max_length: int = 128) -> None:
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer

        from .runtime import session_options

        kwargs = {"file_name": file_name} if file_name else {}
        self.model = ORTModelForSequenceClassification.from_pretrained(
            model_dir, session_options=session_options(threads), provider="CPUExecutionProvider", **kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.max_length = max_length

    def encode(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def run(self, inputs: dict) -> np.ndarray:
        return self.model(**inputs).logits.numpy()

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.model(**self.encode(texts)).logits.argmax(-1).numpy()
