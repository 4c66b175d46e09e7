"""ONNX fp32 export through optimum, and a parity check against PyTorch on real sentences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtime import OnnxClassifier

__all__ = ["FALLBACK_TEXTS", "ParityError", "ParityReport", "check_parity", "export_onnx", "fuse_transformer"]

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


def fuse_transformer(onnx_dir: str | Path, file_name: str = "model.onnx") -> dict:
    """Rewrite ``onnx_dir/file_name`` with ONNX Runtime's transformer fusions; returns what was fused.

    One ``Attention`` node per layer (instead of about 20 MatMul/Reshape/Transpose/Softmax nodes),
    ``SkipLayerNormalization`` for the residual adds, ``BiasGelu`` and ``EmbedLayerNormalization``: a
    3-layer MiniLM goes from 401 to 79 nodes. Dynamic int8 then quantizes the fused attention as
    ``QAttention`` and the embedding table as int8. This is ``onnxruntime.transformers.optimizer`` with
    ``opt_level=0``: only pattern fusions, no hardware-specific rewrites, so the file stays portable
    (the session applies its own optimizations at load). Symbolic shape inference then records the
    contrib ops' output types, which the quantizer needs. Model types ONNX Runtime cannot fuse are left
    as they are (``{"fused": False, "reason": ...}``); the parity check runs on the result either way.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from optimum.onnxruntime.utils import ORTConfigManager
    from transformers import AutoConfig

    path = Path(onnx_dir) / file_name
    config = AutoConfig.from_pretrained(onnx_dir)
    try:
        ORTConfigManager.check_optimization_supported_model(config.model_type, None)
    except (KeyError, NotImplementedError):
        return {"fused": False, "reason": f"ONNX Runtime has no transformer fusions for model_type {config.model_type!r}"}
    ort_type = ORTConfigManager.get_model_ort_type(config.model_type)
    heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    nodes_before = len(onnx.load(str(path), load_external_data=False).graph.node)
    model = optimize_model(str(path), model_type=ort_type, num_heads=heads, hidden_size=hidden,
                           optimization_options=FusionOptions(ort_type), opt_level=0)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    graph = model.model
    # The fused ops live in ONNX Runtime's domain; the optimizer does not always declare it, and onnx's
    # own shape inference (which the quantizer runs) refuses a graph whose ops have no opset import.
    domains = {n.domain for n in graph.graph.node} - {"", "ai.onnx"}
    declared = {o.domain for o in graph.opset_import}
    graph.opset_import.extend(onnx.helper.make_opsetid(d, 1) for d in sorted(domains - declared))
    graph = SymbolicShapeInference.infer_shapes(graph, auto_merge=True)
    onnx.save(graph, str(path))
    return {"fused": bool(fused), "model_type": ort_type, "operators": fused, "nodes_before": nodes_before,
            "nodes_after": len(graph.graph.node)}


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
