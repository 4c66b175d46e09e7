"""Model cards: a README.md in each exported directory, with what was measured during export."""

from __future__ import annotations

from pathlib import Path

__all__ = ["model_card", "write_model_card"]

_USAGE = {
    "hf": """```python
from transformers import pipeline
clf = pipeline("text-classification", model="{path}")
print(clf("an example sentence"))
```""",
    "onnx": """```python
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline
model = ORTModelForSequenceClassification.from_pretrained("{path}"{file_arg})
clf = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained("{path}"))
print(clf("an example sentence"))
```

Leaner, with the same numbers as the benchmark (tokenizer straight into onnxruntime):

```python
from export.runtime import OnnxClassifier
clf = OnnxClassifier("{path}", threads=2)
print(clf.predict(["an example sentence"]))
```

Batch prediction of a CSV/TSV/JSONL file: `python cli.py predict-file --model_dir {path} --input_file texts.csv --output_file preds.csv`.""",
}


def _pct(x: float | None) -> str:
    return "not measured" if x is None else f"{100 * x:.2f}%"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def model_card(summary: dict, variant: str, path: str) -> str:
    """Markdown for ``variant`` (``hf``, ``fp32`` or ``int8``) from the export summary (``export.json``)."""
    ev = summary.get("evaluation") or {}
    q = summary.get("quantization") or {}
    onnx = summary.get("onnx") or {}
    parity = summary.get("parity") or {}
    labels = summary.get("label_names", [])
    kind = {"hf": "PyTorch (safetensors), fp32", "fp32": "ONNX fp32", "int8": "ONNX int8"}[variant]
    tags = ["text-classification"] + (["onnx"] if variant != "hf" else []) + (["int8", "quantized"] if variant == "int8" else [])
    lines = ["---", "pipeline_tag: text-classification", "tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    lines += [f"# {Path(summary['output_dir']).name}: {kind}", ""]
    if variant == "int8" and ev and not ev.get("passed", True):
        lines += ["> **REJECTED by the accuracy gate**: int8 lost "
                  f"{ev['drop_points']:.2f} points (allowed {ev['max_accuracy_drop']:g}). Do not ship this model.", ""]
    lines += [f"Exported by `python cli.py export` from `{summary['source']}` ({summary['source_info']['kind']}"
              + (f", {summary['source_info']['module_class']}" if "module_class" in summary["source_info"] else "")
              + (", LoRA merged into the base" if summary["source_info"].get("merged") else "") + ").", "",
              f"Labels: {', '.join(f'{i} = {n}' for i, n in enumerate(labels))}.", "", "## Measured at export", "",
              "| metric | value |", "|---|---|"]
    acc = {"hf": ev.get("fp32_accuracy"), "fp32": ev.get("fp32_accuracy"), "int8": ev.get("int8_accuracy")}[variant]
    if ev:
        lines.append(f"| accuracy on `{ev['file']}` ({ev['n_rows']} rows, batch {ev.get('batch_size', 1)}) | {_pct(acc)} |")
    else:
        lines.append("| accuracy | not measured (no eval_file given) |")
    if variant in ("hf", "fp32") and parity:
        lines.append(f"| max \\|logit difference\\| ONNX fp32 vs PyTorch ({parity['n_texts']} texts) | "
                     f"{parity['max_abs_diff']:.2e} (tolerance {parity['atol']:g}) |")
    fusion = onnx.get("fusion") or {}
    if variant in ("fp32", "int8"):
        ops = ", ".join(f"{k} x{v}" for k, v in (fusion.get("operators") or {}).items())
        lines.append(f"| graph | {fusion.get('nodes_after')} nodes after transformer fusion ({ops}) |" if fusion.get("fused")
                     else f"| graph | not fused ({fusion.get('reason', 'fuse=false')}) |")
    if variant == "int8":
        if ev:
            lines.append(f"| accuracy drop vs fp32 | {ev['drop_points']:.2f} points (gate: at most {ev['max_accuracy_drop']:g}) |")
            lines.append(f"| same label as fp32 | {_pct(ev.get('agreement'))} |")
        lines.append(f"| quantization | {q.get('mode')} int8, {q.get('isa')}, per_channel={q.get('per_channel')}, "
                     f"operators {q.get('operators')} |")
        if q.get("mode") == "static":
            lines.append(f"| calibration | {q.get('calibration_samples')} training sentences, {q.get('calibration_method')}, "
                         f"{q.get('excluded_nodes')} nodes kept in fp32 (LayerNorm, GELU, residual/embedding/mask adds) |")
    size = {"hf": summary.get("hf", {}).get("size_bytes"), "fp32": onnx.get("size_bytes"), "int8": q.get("size_bytes")}[variant]
    lines.append(f"| file size | {_mb(size)} |")
    if variant != "hf":
        lines.append(f"| ONNX | opset {onnx.get('opset')}, inputs {onnx.get('inputs')}, output `logits` (batch, {len(labels)}), "
                     "dynamic batch and sequence axes |")
    lines.append(f"| CPU | {summary['cpu']['model']} (int8 target {summary['cpu']['isa']}) |")
    lines += ["", "Latency is not measured here; run `python cli.py benchmark` on the target machine.", "", "## Use", ""]
    file_arg = ', file_name="model_quantized.onnx"' if variant == "int8" else ""
    lines.append(_USAGE["hf" if variant == "hf" else "onnx"].format(path=path, file_arg=file_arg))
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())
    lines += ["", f"Software: {versions}.", ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path, summary: dict, variant: str) -> Path:
    """Write ``directory/README.md`` and return its path."""
    path = Path(directory) / "README.md"
    path.write_text(model_card(summary, variant, str(directory)))
    return path
