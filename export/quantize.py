"""int8 quantization with optimum's ``ORTQuantizer``, configured for the CPU it runs on."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

__all__ = ["STATIC_OPERATORS", "cpu_flags", "cpu_model", "detect_isa", "quantization_config", "quantize"]

# Static int8: only MatMul and Add are quantized (optimum's text-classification example); embeddings
# (Gather) stay fp32 because they are not in the list.
STATIC_OPERATORS = ["MatMul", "Add"]


def cpu_flags() -> set[str]:
    """ISA flags of this CPU from ``/proc/cpuinfo`` (x86 ``flags`` or ARM ``Features``); empty if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's marketing name, as far as the OS tells."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect_isa(flags: set[str] | None = None) -> str:
    """The best int8 target of this CPU: ``avx512_vnni`` > ``avx512`` > ``avx2`` > ``arm64``."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags:
        return "arm64"
    raise RuntimeError(f"no int8 target for this CPU ({cpu_model()}): needs avx2, avx512, avx512_vnni or arm64; pass isa")


def quantization_config(isa: str, static: bool = False, per_channel: bool = False):
    """optimum's ``AutoQuantizationConfig.<isa>`` for dynamic or static int8."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factories = {"avx512_vnni": AutoQuantizationConfig.avx512_vnni, "avx512": AutoQuantizationConfig.avx512,
                 "avx2": AutoQuantizationConfig.avx2, "arm64": AutoQuantizationConfig.arm64}
    if isa not in factories:
        raise ValueError(f"isa {isa!r}: expected one of {sorted(factories)}")
    operators = STATIC_OPERATORS if static else None
    return factories[isa](is_static=static, per_channel=per_channel, operators_to_quantize=operators)


def _exclusions():
    """Nodes that break accuracy when statically quantized (optimum's text-classification recipe)."""
    from optimum.onnxruntime.preprocessors import QuantizationPreprocessor
    from optimum.onnxruntime.preprocessors.passes import (
        ExcludeGeLUNodes, ExcludeLayerNormNodes, ExcludeNodeAfter, ExcludeNodeFollowedBy)

    pre = QuantizationPreprocessor()
    pre.register_pass(ExcludeLayerNormNodes())
    pre.register_pass(ExcludeGeLUNodes())
    pre.register_pass(ExcludeNodeAfter("Add", "Add"))  # residual connections
    pre.register_pass(ExcludeNodeAfter("Gather", "Add"))  # embedding sums
    pre.register_pass(ExcludeNodeFollowedBy("Add", "Softmax"))  # the attention mask add
    return pre


def _calibration_ranges(quantizer, onnx_dir: Path, texts: list[str], method: str, max_length: int):
    import datasets
    from optimum.onnxruntime.configuration import AutoCalibrationConfig
    from transformers import AutoTokenizer

    import onnx

    names = [i.name for i in onnx.load(str(quantizer.onnx_model_path), load_external_data=False).graph.input]
    enc = AutoTokenizer.from_pretrained(onnx_dir)(texts, truncation=True, max_length=max_length)
    # One text per calibration batch: no padding, so activation ranges are those of real tokens.
    dataset = datasets.Dataset.from_dict({n: enc[n] for n in names})
    configs = {"minmax": lambda: AutoCalibrationConfig.minmax(dataset),
               "percentile": lambda: AutoCalibrationConfig.percentiles(dataset, percentile=99.999),
               "entropy": lambda: AutoCalibrationConfig.entropy(dataset)}
    if method not in configs:
        raise ValueError(f"calibration_method {method!r}: expected one of {sorted(configs)}")
    with tempfile.TemporaryDirectory() as tmp:
        return quantizer.fit(dataset, configs[method](), onnx_augmented_model_name=Path(tmp) / "augmented.onnx",
                             operators_to_quantize=STATIC_OPERATORS, batch_size=1)


def quantize(onnx_dir: str | Path, out_dir: str | Path, isa: str | None = None, static: bool = False,
             per_channel: bool = False, calibration_texts: list[str] | None = None,
             calibration_method: str = "minmax", max_length: int = 128) -> dict:
    """Write ``out_dir/model_quantized.onnx`` with config and tokenizer; returns what was done.

    Args:
        onnx_dir: directory with the fp32 ``model.onnx`` (from :func:`export.onnx.export_onnx`).
        out_dir: directory to write.
        isa: int8 target; None detects it from this CPU.
        static: calibrate activation ranges on ``calibration_texts`` instead of computing them per call.
        per_channel: one weight scale per output channel (more accurate, slightly slower).
        calibration_texts: training sentences for static quantization.
        calibration_method: ``minmax``, ``percentile`` or ``entropy``.
        max_length: longest calibration sequence.
    """
    from optimum.onnxruntime import ORTQuantizer

    onnx_dir = Path(onnx_dir)
    isa = isa or detect_isa()
    qconfig = quantization_config(isa, static, per_channel)
    quantizer = ORTQuantizer.from_pretrained(onnx_dir, file_name="model.onnx")
    ranges, preprocessor = None, None
    if static:
        if not calibration_texts:
            raise ValueError("static quantization needs calibration_texts (training sentences)")
        ranges = _calibration_ranges(quantizer, onnx_dir, calibration_texts, calibration_method, max_length)
        preprocessor = _exclusions()
    quantizer.quantize(qconfig, out_dir, calibration_tensors_range=ranges, preprocessor=preprocessor)
    info = {"isa": isa, "mode": "static" if static else "dynamic", "per_channel": per_channel,
            "operators": [str(getattr(op, "value", op)) for op in qconfig.operators_to_quantize]}
    if static:
        info.update(calibration_method=calibration_method, calibration_samples=len(calibration_texts),
                    excluded_nodes=len(qconfig.nodes_to_exclude))
    return info
