"""Batch prediction of a CSV/TSV/JSONL file with an exported ONNX model, streamed in chunks.

Rows are read lazily and written as soon as their chunk is predicted, so memory is bounded by
``chunk_size`` texts whatever the size of the file. Within a chunk, texts are batched by length
(less padding), and results are written back in file order.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path

import numpy as np

from .runtime import OnnxClassifier, softmax
from .texts import iter_records

__all__ = ["iter_chunks", "predict_file"]


def iter_chunks(records: Iterator, size: int) -> Iterator[list]:
    """Group an iterator into lists of at most ``size`` items, reading only as far as needed."""
    records = iter(records)
    while chunk := list(islice(records, size)):
        yield chunk


def _predict_chunk(model: OnnxClassifier, texts: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(class index, its probability) per text, each of shape (N,)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    labels, probs = np.empty(len(texts), dtype=np.int64), np.empty(len(texts), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        p = softmax(model.logits([texts[i] for i in idx]).astype(np.float64))
        labels[idx], probs[idx] = p.argmax(-1), p.max(-1)
    return labels, probs


def predict_file(
    model_dir: str,
    input_file: str,
    output_file: str,
    text_column: str | None = None,
    id_column: str | None = None,
    file_name: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 1024,
    max_length: int = 128,
    threads: int | None = None,
) -> int:
    """Write ``output_file`` (CSV: id or row, label, probability) for each text of ``input_file``; returns the row count.

    Texts longer than ``max_length`` tokens are truncated. An empty input gives an output with only the
    header. The output is written to a temporary file and renamed at the end, so a failed run never
    leaves a partial file behind under the final name.

    Args:
        model_dir: exported ONNX directory (``onnx`` or ``onnx-int8`` from the export command).
        input_file: CSV, TSV or JSONL file of texts.
        output_file: CSV file to write.
        text_column: column (or JSONL key) with the texts; None tries text, sentence, review, content.
        id_column: column copied to the output to identify rows; None writes the row (line) number.
        file_name: ONNX file inside ``model_dir``; None finds the only one.
        batch_size: texts per model call.
        chunk_size: texts read, predicted and written at a time (bounds memory).
        max_length: longest token sequence; longer texts are truncated.
        threads: onnxruntime intra-op threads; None uses every core.

    Raises:
        DataError: unknown file type, missing file or column, malformed rows (one line naming file and column).
    """
    columns = [text_column] + ([id_column] if id_column else [])
    records = iter_records(input_file, columns)
    first = next(records, None)  # opens and checks the file (and columns) before the model loads
    model = OnnxClassifier(model_dir, file_name, threads, max_length)
    out = Path(output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    n = 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([id_column or "row", "label", "probability"])
            stream = records if first is None else chain([first], records)
            for chunk in iter_chunks(stream, chunk_size):
                labels, probs = _predict_chunk(model, [values[0] for _, values in chunk], batch_size)
                for (row, values), y, p in zip(chunk, labels, probs):
                    writer.writerow([values[1] if id_column else row, model.label_names[y], f"{p:.6f}"])
                n += len(chunk)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    if n == 0:
        print(f"predict-file: {input_file}: no rows; wrote only the header to {out}", file=sys.stderr)
    return n
