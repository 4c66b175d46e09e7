"""Read texts (and labels) from CSV, TSV or JSONL files, row by row, with one-line errors.

The readers are generators: batch prediction streams files of any size through them, and memory
stays bounded by the caller's chunk, never by the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from datamodules.io import DataError, parse_label

__all__ = ["DataError", "TEXT_COLUMNS", "file_format", "iter_records", "pick_column", "read_labelled"]

# Tried in order when no text column is named: our fixtures and CSVs, SST-2, Steam reviews.
TEXT_COLUMNS = ("text", "sentence", "review", "content")


def file_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``jsonl``, from the file name."""
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in formats:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected .csv, .tsv or .jsonl")
    return formats[suffix]


def pick_column(path: str | Path, header: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str:
    """The column to read: ``wanted`` when given, else the first of ``candidates`` in ``header``."""
    if wanted is not None:
        if wanted not in header:
            raise DataError(f"{path}: missing column {wanted!r}; the columns are {header}")
        return wanted
    for name in candidates:
        if name in header:
            return name
    raise DataError(f"{path}: no text column (tried {list(candidates)}); the columns are {header}; name one")


def _header(path: Path, fmt: str) -> list[str]:
    """Column names (for JSONL: the keys of the first record); [] for an empty file."""
    with open(path, newline="", encoding="utf-8") as f:
        if fmt == "jsonl":
            for number, line in enumerate(f, start=1):
                if line.strip():
                    return list(_json_object(path, number, line))
            return []
        row = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), None)
        return [h.strip().lstrip("\ufeff") for h in row] if row else []


def iter_records(path: str | Path, columns: list[str | None], candidates: tuple[str, ...] = TEXT_COLUMNS) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(row_number, [value per column])`` lazily; a ``None`` column is auto-picked from ``candidates``.

    Row numbers count lines as in the file (CSV header = 1; JSONL first line = 1). An empty file yields
    nothing. TSV is read without quoting (GLUE style); CSV fields may be quoted and span lines.

    Raises:
        DataError: unknown type, missing file or column, bad JSON, a row with a missing field, bad UTF-8.
    """
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        header = _header(path, fmt)
        if not header:
            return
        names = [c if c is not None else pick_column(path, header, None, candidates) for c in columns]
        for name in names:
            pick_column(path, header, name, candidates)
        with open(path, newline="", encoding="utf-8") as f:
            if fmt == "jsonl":
                yield from _jsonl(path, f, names)
                return
            reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",", strict=True,
                                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
            next(reader)
            where = [header.index(n) for n in names]
            for row in reader:
                if not row:
                    continue
                if len(row) < len(header):
                    raise DataError(f"{path}: row {reader.line_num}: expected {len(header)} fields, got {len(row)}")
                yield reader.line_num, [row[i] for i in where]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}: {e.reason}") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}); unbalanced quotes or a truncated file?") from None


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {number}: invalid JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {number}: expected a JSON object per line, got {type(record).__name__}")
    return record


def _jsonl(path: Path, f, names: list[str]) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        record = _json_object(path, number, line)
        missing = [n for n in names if n not in record]
        if missing:
            raise DataError(f"{path}: line {number}: missing column(s) {missing}")
        yield number, ["" if record[n] is None else str(record[n]) for n in names]


def read_labelled(path: str | Path, label_names: list[str], text_column: str | None = None,
                  label_column: str = "label", limit: int | None = None) -> tuple[list[str], list[int]]:
    """Read ``(texts, labels)`` for evaluation; labels are class indices or (case-insensitive) names.

    Raises:
        DataError: as :func:`iter_records`, an unknown label, or no rows at all.
    """
    allowed = {str(i): i for i in range(len(label_names))}
    allowed.update({name.lower(): i for i, name in enumerate(label_names)})
    texts, labels = [], []
    for row, (text, label) in iter_records(path, [text_column, label_column]):
        if limit is not None and len(texts) >= limit:
            break
        texts.append(text)
        labels.append(parse_label(label, allowed, path, str(row), label_column))
    if not texts:
        raise DataError(f"{path}: no labelled rows to evaluate on")
    return texts, labels
