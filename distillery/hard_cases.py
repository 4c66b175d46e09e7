"""Compare a teacher with its student on hand-written tricky sentences and on sarcasm pairs.

``python -m distillery.hard_cases --teacher DIR --student DIR --cases hard_cases/sst2.jsonl
[--sarcasm ../shared/data/sarcasm_isarcasmeval/task_C_En_test.csv] [--json out.json]``

A case file is JSONL, one ``{"text": ..., "label": ..., "category": ...}`` per line, where
``label`` is a class name of the models (``negative``/``positive``). Pair consistency is the share of
iSarcasmEval sarcastic/rephrase pairs (same meaning, said two ways) that a model gives the same class.
Models are anything ``distillery.teacher.load_teacher`` reads: HF directories, our checkpoints, adapters.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from datamodules.io import DataError, read_rows
from distillery.teacher import Teacher, load_teacher

__all__ = [
    "HardCase", "load_cases", "predict", "score_cases", "pair_consistency", "format_report", "hard_case_report", "main",
]


@dataclass(frozen=True)
class HardCase:
    """One tricky sentence: its text, the expected class name, and what makes it hard."""

    text: str
    label: str
    category: str


def load_cases(path: str | Path) -> list[HardCase]:
    """Read a JSONL case file; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: not JSON ({e.msg})") from None
        for key in ("text", "label"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"{path}: line {n}: field '{key}' must be a non-empty string")
        cases.append(HardCase(row["text"], row["label"].strip().lower(), str(row.get("category", "other"))))
    if not cases:
        raise DataError(f"{path}: no cases")
    return cases


def predict(model: Teacher, texts: list[str], batch_size: int = 32, max_length: int = 128) -> list[tuple[str, float]]:
    """(class name, probability) of the predicted class for each text."""
    probs = model.logits(texts, batch_size=batch_size, max_length=max_length).softmax(-1)
    score, idx = probs.max(-1)
    return [(model.label_names[i].lower(), s) for i, s in zip(idx.tolist(), score.tolist())]


def score_cases(models: dict[str, Teacher], cases: list[HardCase], max_length: int = 128) -> dict:
    """Predictions of every model on every case, and per-model scores overall and by category."""
    for name, model in models.items():
        unknown = sorted({c.label for c in cases} - {n.lower() for n in model.label_names})
        if unknown:
            raise DataError(f"{name} ({model.source}): case labels {unknown} are not its classes {model.label_names}")
    preds = {name: predict(model, [c.text for c in cases], max_length=max_length) for name, model in models.items()}
    scores = {}
    for name, rows in preds.items():
        by_category: dict[str, list[int]] = {}
        for case, (label, _) in zip(cases, rows):
            hit = by_category.setdefault(case.category, [0, 0])
            hit[0] += label == case.label
            hit[1] += 1
        correct = sum(h[0] for h in by_category.values())
        scores[name] = {
            "correct": correct, "total": len(cases), "accuracy": correct / len(cases), "by_category": by_category,
        }
    return {
        "cases": [
            {"text": c.text, "label": c.label, "category": c.category, **{n: list(preds[n][i]) for n in models}}
            for i, c in enumerate(cases)
        ],
        "scores": scores,
    }


def pair_consistency(model: Teacher, csv_path: str | Path, max_length: int = 128) -> dict:
    """Share of ``text_0``/``text_1`` pairs given the same class (iSarcasmEval task C layout)."""
    rows = read_rows(csv_path, ["text_0", "text_1", "sarcastic_id"])
    left = predict(model, [r["text_0"] for r in rows], max_length=max_length)
    right = predict(model, [r["text_1"] for r in rows], max_length=max_length)
    same = sum(a[0] == b[0] for a, b in zip(left, right))
    return {"pairs": len(rows), "consistent": same, "share": same / len(rows) if rows else float("nan")}


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_report(result: dict, names: list[str]) -> str:
    """A side-by-side text table (``*`` marks a wrong prediction), then each model's scores."""
    cat_w = max(8, *(len(c["category"]) for c in result["cases"]))
    head = f"{'#':>3}  {'category':<{cat_w}}  {'expected':<9}" + "".join(f"  {n:<15.15}" for n in names) + "  text"
    lines = [head, "-" * len(head)]
    for i, c in enumerate(result["cases"], start=1):
        cells = "".join(
            f"  {c[n][0]:<9.9} {c[n][1]:.2f}{'*' if c[n][0] != c['label'] else ' '} " for n in names
        )
        lines.append(f"{i:>3}  {c['category']:<{cat_w}}  {c['label']:<9}{cells}  {_clip(c['text'], 70)}")
    lines[1] = "-" * max(len(line) for line in lines)
    lines += ["", "score (correct/total; * above marks the misses)"]
    for n in names:
        s = result["scores"][n]
        cats = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(s["by_category"].items()))
        lines.append(f"  {n:<10} {s['correct']}/{s['total']} = {100 * s['accuracy']:.1f}%   ({cats})")
    if "pair_consistency" in result:
        first = next(iter(result["pair_consistency"].values()))
        what = f"same class for a sarcastic text and its rephrase, {first['pairs']} pairs"
        lines += ["", f"sarcasm pair consistency ({what})"]
        for n, p in result["pair_consistency"].items():
            lines.append(f"  {n:<10} {p['consistent']}/{p['pairs']} = {100 * p['share']:.1f}%")
    return "\n".join(lines)


def hard_case_report(
    models: dict[str, Teacher], cases_path: str | Path, sarcasm_csv: str | Path | None = None, max_length: int = 128
) -> tuple[str, dict]:
    """Score ``models`` (name -> loaded model) on a case file and optionally sarcasm pairs; return (text, data).

    Callable from a pipeline with live models: ``Teacher(pl_module.hf_model(), dm.tokenizer, "student", names)``.
    """
    result = score_cases(models, load_cases(cases_path), max_length)
    if sarcasm_csv is not None:
        result["pair_consistency"] = {n: pair_consistency(m, sarcasm_csv, max_length) for n, m in models.items()}
    return format_report(result, list(models)), result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m distillery.hard_cases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="teacher: HF model dir, .ckpt or adapter dir")
    parser.add_argument("--student", help="student: HF model dir, .ckpt or adapter dir")
    parser.add_argument("--cases", required=True, help="JSONL of hand-written cases")
    parser.add_argument("--sarcasm", help="iSarcasmEval task C CSV (text_0,text_1,sarcastic_id) for pair consistency")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json", help="also write the predictions and scores here")
    args = parser.parse_args(argv)
    models = {n: load_teacher(p) for n, p in (("teacher", args.teacher), ("student", args.student)) if p}
    if not models:
        parser.error("give --teacher, --student or both")
    text, result = hard_case_report(models, args.cases, args.sarcasm, args.max_length)
    print(f"hard cases: {args.cases}\n" + "".join(f"{n}: {m.source}\n" for n, m in models.items()) + "\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
