"""Reading labelled text tables with errors that name the file, row and field."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataError", "Split", "read_rows", "read_texts", "parse_label"]

# Steam reviews reach 8,000+ characters; the csv module's default field cap is 128 KiB, keep headroom.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataError(ValueError):
    """A problem in an input file, reported as one line that names the file, row and field."""


@dataclass
class Split:
    """One split of a text classification dataset.

    Args:
        texts: the raw texts.
        labels: class index per text, or -1 where the split is unlabelled.
        ids: a stable identifier per text (row index, review id), written next to predictions.
        dropped: rows skipped while reading, by reason, so that nothing is dropped silently.
    """

    texts: list[str]
    labels: list[int]
    ids: list[str]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def with_unlabelled(self, texts: list[str], prefix: str = "transfer") -> "Split":
        """A copy with ``texts`` appended as rows without a label (-1), e.g. a distillation transfer set."""
        ids = [f"{prefix}:{i}" for i in range(len(texts))]
        return Split(self.texts + list(texts), self.labels + [-1] * len(texts), self.ids + ids, dict(self.dropped))

    def subset(self, indices: list[int]) -> "Split":
        return Split(
            [self.texts[i] for i in indices], [self.labels[i] for i in indices], [self.ids[i] for i in indices],
            dict(self.dropped),
        )


def read_rows(path: str | Path, columns: list[str], delimiter: str = ",") -> list[dict[str, str]]:
    """Read a delimited file with a header into dicts, checking the columns the caller needs.

    Quoted fields may span lines. Rows are numbered as in the file (header = row 1).

    Raises:
        DataError: missing file, undecodable bytes, missing column, a repeated header line, a row with
            the wrong number of fields or an unterminated quote (a truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL, strict=True)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file, expected a header with columns {columns}")
            header = [h.strip().lstrip("\ufeff") for h in header]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; the header has {header}")
            rows = []
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if [c.strip() for c in row] == header:
                    raise DataError(f"{path}: row {line}: the header is repeated (two files concatenated?)")
                if len(row) != len(header):
                    raise DataError(
                        f"{path}: row {line}: expected {len(header)} fields ({delimiter!r}-separated), got {len(row)}"
                    )
                rows.append(dict(zip(header, row), _row=str(line)))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}: {e.reason}") from None
    except csv.Error as e:
        raise DataError(f"{path}: row {reader.line_num}: malformed CSV ({e}); unbalanced quotes or a truncated file?") from None
    return rows


def read_texts(path: str | Path, columns: tuple[str, ...] = ("text", "sentence", "review")) -> list[str]:
    """Non-empty texts from a ``.csv``/``.tsv`` (the first of ``columns`` in its header) or a plain file, one per line.

    Raises:
        DataError: missing file, undecodable bytes, or a table without any of ``columns``.
    """
    path = Path(path)
    if path.suffix in (".csv", ".tsv"):
        rows = read_rows(path, [], delimiter="\t" if path.suffix == ".tsv" else ",")
        header = [k for k in rows[0] if k != "_row"] if rows else []
        column = next((c for c in columns if c in header), None)
        if rows and column is None:
            raise DataError(f"{path}: no text column; expected one of {list(columns)}, the header has {header}")
        return [r[column].strip() for r in rows if r[column].strip()]
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}: {e.reason}") from None
    return [line.strip() for line in lines if line.strip()]


def parse_label(value: str, allowed: dict[str, int], path: str | Path, row: str, column: str) -> int:
    """Map a label string to its class index, or raise naming the file, row and column."""
    key = value.strip().lower()
    if key not in allowed:
        raise DataError(f"{path}: row {row}: {column}={value!r} is not a known label {sorted(set(allowed))}")
    return allowed[key]
