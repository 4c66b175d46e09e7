"""Export stage: ONNX fp32/int8 with parity checks and accuracy gates, latency benchmark, batch prediction."""

import importlib

__all__ = ["OnnxClassifier", "export_model", "run_benchmark", "predict_file"]
_HOME = {"OnnxClassifier": "runtime", "export_model": "stage", "run_benchmark": "benchmark", "predict_file": "predict"}


def __getattr__(name: str):
    # Lazy, so that `import export.runtime` stays torch-free (export.stage imports Lightning).
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
