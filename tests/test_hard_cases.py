"""Hard-case report: side-by-side predictions, per-model scores, sarcasm pair consistency."""

from __future__ import annotations

import csv
import json

import pytest

from datamodules.io import DataError
from distillery.hard_cases import load_cases, main, pair_consistency
from distillery.teacher import load_teacher
from tests.conftest import REPO
from tests.test_distill import make_tiny_teacher, teacher_vocab

CASES = [
    {"text": "oh wonderful , the film stops right when it gets good", "label": "negative", "category": "sarcasm"},
    {"text": "not bad at all , actually quite good", "label": "positive", "category": "double negation"},
    {"text": "great soundtrack , but a dull , lifeless mess", "label": "negative", "category": "mixed"},
    {"text": "i loved every minute of it", "label": "positive", "category": "plain"},
]
PAIRS = [
    ("what a fun ride , i want my two hours back", "the film was boring and too long"),
    ('"great" combat, if you like crashes', "the combat is broken"),
    ("wonderful story with great characters", "i loved the story and the characters"),
]


@pytest.fixture
def files(tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in CASES) + "\n\n")
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text_0", "text_1", "sarcastic_id"])
        w.writerows([a, b, i % 2] for i, (a, b) in enumerate(PAIRS))
    teacher = make_tiny_teacher(tmp_path / "teacher", vocab=teacher_vocab())
    student = make_tiny_teacher(tmp_path / "student", seed=3)
    return cases, pairs, teacher, student


def expected(model_dir) -> list[tuple[str, float]]:
    model = load_teacher(str(model_dir))
    probs = model.logits([c["text"] for c in CASES]).softmax(-1)
    return [(model.label_names[int(p.argmax())], float(p.max())) for p in probs]


def test_report_shows_both_models_side_by_side(files, tmp_path, capsys):
    cases, pairs, teacher, student = files
    result = main(["--teacher", str(teacher), "--student", str(student), "--cases", str(cases),
                   "--sarcasm", str(pairs), "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    want = {"teacher": expected(teacher), "student": expected(student)}
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == len(CASES)
    for i, (case, line) in enumerate(zip(CASES, rows)):
        for name in ("teacher", "student"):
            label, prob = want[name][i]
            assert result["cases"][i][name][0] == label
            assert result["cases"][i][name][1] == pytest.approx(prob, abs=1e-5)
            cell = f"{label:<9} {prob:.2f}{'*' if label != case['label'] else ' '}"
            assert cell in line, (cell, line)
        assert case["category"] in line and case["text"][:30] in line
    for name in ("teacher", "student"):
        correct = sum(w[0] == c["label"] for w, c in zip(want[name], CASES))
        assert result["scores"][name]["correct"] == correct
        assert f"{name:<10} {correct}/{len(CASES)} = {100 * correct / len(CASES):.1f}%" in out
        assert "sarcasm 1/1" in out or "sarcasm 0/1" in out
    assert json.loads((tmp_path / "out.json").read_text())["scores"] == result["scores"]
    assert "sarcasm pair consistency" in out and "3 pairs" in out


def test_pair_consistency_counts_pairs_given_the_same_class(files):
    _, pairs, teacher, _ = files
    model = load_teacher(str(teacher))
    left = model.logits([a for a, _ in PAIRS]).argmax(-1)
    right = model.logits([b for _, b in PAIRS]).argmax(-1)
    same = int((left == right).sum())
    assert pair_consistency(model, pairs) == {"pairs": 3, "consistent": same, "share": same / 3}


def test_single_model_and_missing_models(files, capsys):
    cases, _, _, student = files
    result = main(["--student", str(student), "--cases", str(cases)])
    assert list(result["scores"]) == ["student"]
    with pytest.raises(SystemExit):
        main(["--cases", str(cases)])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "fine", "label": "positive"}\n{"text": "oops"\n', "line 2: not JSON"),
        ('{"text": "fine"}\n', "line 1: field 'label'"),
        ("\n", "no cases"),
    ],
)
def test_bad_case_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_cases(path)


def test_case_labels_must_be_model_classes(files, tmp_path):
    _, _, teacher, _ = files
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"text": "meh", "label": "neutral"}) + "\n")
    with pytest.raises(DataError, match="'neutral'"):
        main(["--teacher", str(teacher), "--cases", str(path)])


@pytest.mark.parametrize("name", ["sst2.jsonl", "steam.jsonl"])
def test_shipped_case_files_parse(name):
    cases = load_cases(REPO / "hard_cases" / name)
    assert len(cases) >= 15
    assert {c.label for c in cases} == {"negative", "positive"}
    assert {"sarcasm", "double negation", "mixed"} <= {c.category for c in cases}
    assert len({c.text for c in cases}) == len(cases)


def test_report_on_a_live_training_model_restores_its_mode(files, tiny_bert):
    from distillery.hard_cases import hard_case_report
    from distillery.teacher import Teacher
    from lit_modules import TextClassifier

    cases, _, _, _ = files
    module = TextClassifier(model_name=str(tiny_bert), label_names=["negative", "positive"])
    from transformers import AutoTokenizer

    live = Teacher(module.hf_model(), AutoTokenizer.from_pretrained(tiny_bert), "live", module.label_names)
    assert module.model.training
    _, first = hard_case_report({"student": live}, cases)
    _, second = hard_case_report({"student": live}, cases)
    assert module.model.training, "the model's train mode is restored"
    assert first == second, "predictions run with dropout off"
