"""Entry points of ``python cli.py export|benchmark|predict-file``: typed functions turned into parsers.

Each parser comes from the function's signature and docstring (jsonargparse), so ``--help`` lists
every option and ``--config file.yaml`` works. Expected failures (parity, accuracy gate, bad input
files) end the command with one line on stderr and a non-zero exit status, not a traceback.
"""

from __future__ import annotations

import json
import os

__all__ = ["benchmark_main", "export_main", "predict_main"]


def _run(function, argv: list[str] | None, prog: str):
    from jsonargparse import CLI

    from distillery.hub import ModelNotFoundError

    from .gate import GateError
    from .onnx import ParityError
    from .source import SourceError
    from .stage import ExportError
    from .texts import DataError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return CLI(function, args=argv, as_positional=False, prog=f"cli.py {prog}")
    except (ParityError, GateError, DataError, SourceError, ExportError, ModelNotFoundError, FileNotFoundError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None


def export_main(argv: list[str] | None = None) -> dict:
    """``python cli.py export --source CKPT_OR_DIR --output_dir DIR --eval_file dev.tsv``; returns the summary."""
    from .stage import export_model

    summary = _run(export_model, argv, "export")
    q, ev = summary.get("quantization"), summary.get("evaluation")
    line = f"export: {summary['output_dir']}: parity max|diff| {summary['parity']['max_abs_diff']:.2e}"
    if q:
        line += f"; int8 {q['mode']} {q['isa']} per_channel={q['per_channel']}"
    if ev and "int8_accuracy" in ev:
        line += f"; accuracy fp32 {100 * ev['fp32_accuracy']:.2f}% int8 {100 * ev['int8_accuracy']:.2f}% (drop {ev['drop_points']:.2f} pts)"
    print(line, flush=True)
    return summary


def benchmark_main(argv: list[str] | None = None) -> dict:
    """``python cli.py benchmark --student_onnx_int8 DIR ... --eval_file dev.tsv --output_dir DIR``."""
    from .benchmark import run_benchmark

    result = _run(run_benchmark, argv, "benchmark")
    print(json.dumps({"written": result["written"]}), flush=True)
    return result


def predict_main(argv: list[str] | None = None) -> int:
    """``python cli.py predict-file --model_dir DIR --input_file texts.csv --output_file preds.csv``; returns the row count."""
    from .predict import predict_file

    return _run(predict_file, argv, "predict-file")
