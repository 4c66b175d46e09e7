"""The export stage: source -> HF dir -> ONNX fp32 (parity-checked) -> int8 (accuracy-gated) -> model cards.

Output layout under ``output_dir``::

    hf/           plain transformers model + tokenizer + label names (LoRA merged)
    onnx/         model.onnx (fp32, transformer-fused)    loads with ORTModelForSequenceClassification
    onnx-int8/    model_quantized.onnx                    only when the accuracy gate passed
    onnx-int8.rejected/                                   instead, when it failed (the command exits non-zero)
    export.json   everything measured; each directory also has a README.md model card
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from callbacks.hf_export import replace_dir

from .card import write_model_card
from .gate import GateError, accuracy_gate, evaluate, gate_message
from .onnx import FALLBACK_TEXTS, ParityError, check_parity, export_onnx, fuse_transformer
from .quantize import cpu_model, detect_isa, quantize
from .runtime import OnnxClassifier
from .source import write_hf_dir
from .texts import iter_records, read_labelled

__all__ = ["ExportError", "export_model"]


class ExportError(ValueError):
    """Options that cannot work together (e.g. an accuracy gate without an eval file)."""


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "onnx")}


def _size(directory: Path, suffixes: tuple[str, ...]) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.endswith(suffixes))


def _promote(src: Path, dst: Path, stale: Path | None = None) -> None:
    """Move ``src`` to ``dst`` (replacing it) and drop ``stale``, so the output never shows both verdicts."""
    for old in (dst, stale):
        if old is not None and old.exists():
            shutil.rmtree(old)
    os.replace(src, dst)


class _Timer:
    """``with timed("step"):`` records the step's wall time in seconds."""

    def __init__(self, into: dict) -> None:
        self.into = into

    @contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        yield
        self.into[step] = time.perf_counter() - start


def _isa_or_unknown() -> str:
    try:
        return detect_isa()
    except RuntimeError:
        return "unknown"


def _sample_texts(path: str, column: str | None, n: int, seed: int) -> list[str]:
    """A seeded uniform sample of ``n`` texts, read in one pass without holding the file (reservoir)."""
    rng, sample = random.Random(seed), []
    for i, (_, (text,)) in enumerate(iter_records(path, [column])):
        if i < n:
            sample.append(text)
        elif (j := rng.randint(0, i)) < n:
            sample[j] = text
    return sample


def export_model(
    source: str,
    output_dir: str,
    eval_file: str | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    eval_limit: int | None = None,
    eval_batch_size: int = 1,
    parity_texts: list[str] | None = None,
    parity_samples: int = 64,
    atol: float = 1e-4,
    opset: int = 18,
    fuse: bool | None = None,
    max_length: int = 128,
    quantization: Literal["dynamic", "static", "none"] = "dynamic",
    isa: Literal["avx512_vnni", "avx512", "avx2", "arm64"] | None = None,
    per_channel: bool = True,
    calibration_file: str | None = None,
    calibration_samples: int = 256,
    calibration_method: Literal["minmax", "percentile", "entropy"] = "minmax",
    max_accuracy_drop: float | None = 1.0,
    module_class: str | None = None,
    label_names: list[str] | None = None,
    seed: int = 42,
) -> dict:
    """Export a classifier to ONNX fp32 and int8, check parity and accuracy, and write model cards.

    Args:
        source: a Lightning ``.ckpt`` of one of our modules, an HF model directory, or a PEFT LoRA adapter directory.
        output_dir: where ``hf/``, ``onnx/``, ``onnx-int8/`` and ``export.json`` go.
        eval_file: labelled CSV/TSV/JSONL (e.g. SST-2 ``dev.tsv``) for the accuracy gate and the parity texts.
        text_column: text column of eval/calibration files; None tries text, sentence, review, content.
        label_column: label column of ``eval_file`` (class index or label name).
        eval_limit: evaluate on the first N rows only.
        eval_batch_size: texts per call when evaluating; 1 by default because dynamic int8 computes activation
            scales per call, so accuracy depends on the batch, and single sentences are the latency-critical case.
        parity_texts: texts for the parity check; None takes the first ``parity_samples`` eval texts.
        parity_samples: how many eval texts the parity check uses.
        atol: largest allowed absolute logit difference between ONNX fp32 and PyTorch.
        opset: ONNX opset (17 or newer).
        fuse: rewrite the fp32 graph with ONNX Runtime's transformer fusions (one Attention node per layer,
            SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) before the parity check and
            quantization; None fuses unless quantization is static, whose calibration keeps LayerNorm and
            GELU nodes in fp32 by name and so needs the unfused graph.
        max_length: longest token sequence (longer texts are truncated).
        quantization: ``dynamic`` (default), ``static`` (calibrated on ``calibration_file``) or ``none``.
        isa: int8 target; None detects it from /proc/cpuinfo (avx512_vnni > avx512 > avx2 > arm64).
        per_channel: one weight scale per output channel. On a MiniLM SST-2 model per-tensor scales lost
            1.15 points of dev accuracy and per-channel 0.34, at about the same speed.
        calibration_file: training texts for static quantization (CSV/TSV/JSONL).
        calibration_samples: how many training texts calibrate static quantization.
        calibration_method: how activation ranges are computed from the calibration texts.
        max_accuracy_drop: largest allowed int8 accuracy loss vs fp32, in points; None skips the gate.
        module_class: LightningModule class of a checkpoint that does not record one (e.g. ``lit_modules.TextClassifier``).
        label_names: class names for an adapter without a config, or to rename an HF model's labels.
        seed: seed of the calibration sample.

    Raises:
        ParityError: ONNX fp32 differs from PyTorch by more than ``atol`` (``onnx.rejected/`` is kept).
        GateError: int8 lost more than ``max_accuracy_drop`` points (``onnx-int8.rejected/`` is kept).
    """
    if quantization != "none" and max_accuracy_drop is not None and not eval_file:
        raise ExportError("the accuracy gate needs an eval_file (labelled dev/test rows); pass max_accuracy_drop=null to skip it")
    if quantization == "static" and not calibration_file:
        raise ExportError("static quantization needs a calibration_file of training texts")
    if opset < 17:
        raise ExportError(f"opset {opset}: need 17 or newer")
    if fuse is None:
        fuse = quantization != "static"
    elif fuse and quantization == "static":
        raise ExportError("fuse=true with quantization=static: static int8 keeps LayerNorm/GELU nodes in fp32, "
                          "which fusion removes; pass fuse=false (or leave it unset) or quantization=dynamic")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"source": str(source), "output_dir": str(out), "cpu": {"model": cpu_model()},
                     "versions": _versions(), "timings_s": {}}
    timed = _Timer(summary["timings_s"])

    info: dict = {}
    with timed("hf"):
        replace_dir(lambda tmp: info.update(write_hf_dir(source, tmp, module_class, label_names)), out / "hf")
    from transformers import AutoConfig

    # AutoConfig, not config.json: save_pretrained leaves out default label names (LABEL_0, ...).
    config = AutoConfig.from_pretrained(out / "hf")
    names = [config.id2label[i] for i in range(config.num_labels)]
    summary.update(source_info=info, label_names=names, hf={"size_bytes": _size(out / "hf", (".safetensors", ".bin"))})
    texts, labels = read_labelled(eval_file, names, text_column, label_column, eval_limit) if eval_file else ([], [])

    fusion = {"fused": False, "reason": "fuse=false"}

    def write_onnx(tmp: Path) -> None:
        nonlocal fusion
        export_onnx(out / "hf", tmp, opset)
        if fuse:
            fusion = fuse_transformer(tmp)

    with timed("onnx_export"):
        replace_dir(write_onnx, out / "onnx")
    fp32 = OnnxClassifier(out / "onnx", max_length=max_length)
    summary["onnx"] = {"opset": opset, "file": "model.onnx", "size_bytes": fp32.path.stat().st_size,
                       "inputs": list(fp32.input_names), "outputs": fp32.output_names, "fusion": fusion}
    try:
        with timed("parity"):
            report = check_parity(out / "hf", out / "onnx", parity_texts or texts[:parity_samples] or FALLBACK_TEXTS,
                                  atol, max_length)
        summary["parity"] = vars(report)
    except ParityError as e:
        # Keep the export for inspection, under a name nobody ships by mistake.
        summary["parity"] = {"error": str(e)}
        _promote(out / "onnx", out / "onnx.rejected")
        (out / "export.json").write_text(json.dumps(summary, indent=2))
        hint = "; try fuse=false" if fusion.get("fused") else ""
        raise ParityError(f"{e}; the export is kept in {out / 'onnx.rejected'}{hint}") from None

    failure, int8_dir = None, None
    if quantization != "none":
        candidate = out / ".onnx-int8.candidate"
        static = quantization == "static"
        calib = _sample_texts(calibration_file, text_column, calibration_samples, seed) if static else None

        def write_int8(tmp: Path) -> None:
            summary["quantization"] = quantize(out / "onnx", tmp, isa, static, per_channel, calib, calibration_method, max_length)

        with timed("quantize"):
            replace_dir(write_int8, candidate)
        summary["quantization"].update(file="model_quantized.onnx", size_bytes=(candidate / "model_quantized.onnx").stat().st_size)
        gate = None
        if eval_file:
            with timed("evaluate"):
                allowed = max_accuracy_drop if max_accuracy_drop is not None else float("inf")
                gate = accuracy_gate(fp32, OnnxClassifier(candidate, max_length=max_length), texts, labels, allowed, eval_batch_size)
            summary["evaluation"] = dict(gate.as_dict(), file=str(eval_file), batch_size=eval_batch_size,
                                         gated=max_accuracy_drop is not None)
        # Only a model that passed the gate gets the name that deployments load.
        passed = gate is None or gate.passed
        int8_dir = out / ("onnx-int8" if passed else "onnx-int8.rejected")
        _promote(candidate, int8_dir, out / ("onnx-int8.rejected" if passed else "onnx-int8"))
        if not passed:
            hints = (["per_channel=true"] if not per_channel else []) + (["dynamic quantization"] if static else [])
            failure = gate_message(gate, str(eval_file), str(int8_dir), hints)
    elif eval_file:
        acc, _ = evaluate(fp32, texts, labels, eval_batch_size)
        summary["evaluation"] = {"file": str(eval_file), "fp32_accuracy": acc, "n_rows": len(texts),
                                 "batch_size": eval_batch_size, "gated": False}

    summary["cpu"]["isa"] = summary.get("quantization", {}).get("isa") or isa or _isa_or_unknown()
    for directory, variant in ((out / "hf", "hf"), (out / "onnx", "fp32"), (int8_dir, "int8")):
        if directory is not None:
            write_model_card(directory, summary, variant)
    (out / "export.json").write_text(json.dumps(summary, indent=2))
    if failure:
        raise GateError(failure)
    return summary
