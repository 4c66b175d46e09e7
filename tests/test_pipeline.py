"""The pipeline end to end on a tiny BERT and fixture sentences: manifest, report, plot, skips, gates, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from distillery.baselines import knn_predict, run_baselines
from distillery.gates import Gates, check_gates, gate_failures
from distillery.pipeline import STAGES, _normalise, pipeline_main
from export.gate import classification_scores
from tests.conftest import NEGATIVE, POSITIVE, write_sst2

REPO = Path(__file__).resolve().parents[1]


def pipeline_config(tiny: Path, data: Path, run_dir: Path, cases: Path) -> dict:
    data_args = [f"--model.init_args.model_name={tiny}", f"--data.init_args.data_dir={data}",
                 "--data.init_args.batch_size=8", "--trainer.val_check_interval=1.0"]
    return {
        "run_dir": str(run_dir),
        "teacher": {"config": str(REPO / "configs/sst2_classify.yaml"), "args": [*data_args, "--trainer.max_epochs=2"],
                    "quick_args": ["--trainer.max_epochs=1"]},
        "student": {"config": str(REPO / "configs/sst2_distill.yaml"), "init_from_teacher": True,
                    "args": [*data_args, "--model.init_args.keep_layers=[0]", "--trainer.max_epochs=1"]},
        "export": {"quantization": "dynamic", "max_length": 64},
        "benchmark": {"threads": [1], "batch_sizes": [1, 32], "warmup": 2, "warmup_batches": 1, "passes": 1,
                      "max_length": 64, "optimum_baseline": False, "isolate": False},
        "gates": {"max_int8_drop": 100.0, "max_student_drop": 100.0, "min_margin_over_baselines": -100.0},
        "hard_cases": {"cases": str(cases), "sarcasm": None, "max_length": 64},
        "baselines": {"encoder": str(tiny), "shots": [2], "metrics": ["cosine", "euclidean"], "draws": 2,
                      "latency_texts": 5},
    }


@pytest.fixture(scope="module")
def pipeline_run(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = write_sst2(root / "sst2")
    cases = root / "cases.jsonl"
    cases.write_text("\n".join(json.dumps({"text": t, "label": y, "category": c}) for t, y, c in [
        (POSITIVE[0], "positive", "plain"), (NEGATIVE[0], "negative", "plain"),
        ("not bad at all", "positive", "double negation")]) + "\n")
    config = root / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(tiny_bert, data, root / "run", cases)))
    manifest = pipeline_main(["--config", str(config), "--quick"])
    return root, config, manifest


def test_quick_pipeline_runs_every_stage_and_writes_manifest_report_and_plot(pipeline_run):
    root, _, manifest = pipeline_run
    run = root / "run_quick"  # --quick writes next to the full run, never into it
    assert [s for s in manifest["stages"]] == list(STAGES)
    assert all(manifest["stages"][s]["status"] == "done" and manifest["stages"][s]["last_action"] == "ran" for s in STAGES)
    saved = json.loads((run / "manifest.json").read_text())
    assert saved["code_version"].get("git_commit") or saved["code_version"].get("package_version")
    assert all(saved["stages"][s]["code_version"] == saved["code_version"] for s in STAGES)  # each stage says which code made it
    assert saved["config"]["quick"] is True and saved["config"]["teacher"]["quick_args"] == ["--trainer.max_epochs=1"]
    assert any(k.endswith("train.tsv") for k in saved["inputs"]["data"]) and all(len(v) == 64 for v in saved["inputs"]["data"].values())
    assert all(saved["stages"][s]["wall_s"] > 0 for s in STAGES)
    for path in ("teacher/fit/version_0/hf_model/config.json", "export/onnx-int8/model_quantized.onnx",
                 "benchmark/benchmark.json", "hard_cases/hard_cases.txt", "baselines/baselines.json",
                 "report/report.md", "report/accuracy_vs_latency.png", "data/dev.jsonl"):
        assert (run / path).is_file(), path
    assert not list(run.glob(".*.partial")) and not list(run.glob("*.failed"))
    # The student read the cache stage's logits: the fit never had to run the teacher.
    assert "teacher cache hit" in (run / "student/fit.log").read_text()
    report = (run / "report/report.md").read_text()
    for row in ("teacher (PyTorch fp32)", "student (ONNX int8)", "embedding probe", "few-shot kNN, 2 per class, cosine",
                "few-shot kNN, 2 per class, euclidean", "## Hard cases", "double negation", "## Stages"):
        assert row in report, row
    models = json.loads((run / "report/models.json").read_text())
    assert {m["model"] for m in models} >= {"teacher", "student", "student_onnx_int8", "embedding_probe"}
    for m in models:
        assert 0 <= m["accuracy"] <= 1 and m["parameters"] > 0 and m["b1_p50_ms"] > 0 and m["size_bytes"] > 0, m
    teacher = next(m for m in models if m["model"] == "teacher")
    student = next(m for m in models if m["model"] == "student")
    assert student["parameters"] < teacher["parameters"]  # one of two layers kept


def test_second_run_skips_unchanged_stages_and_force_redoes_one_and_what_follows(pipeline_run):
    _, config, _ = pipeline_run
    again = pipeline_main(["--config", str(config), "--quick"])
    assert {s: again["stages"][s]["last_action"] for s in STAGES} == {s: "skipped" for s in STAGES[:-1]} | {"report": "ran"} or \
        all(again["stages"][s]["last_action"] == "skipped" for s in STAGES)
    forced = pipeline_main(["--config", str(config), "--quick", "--force", "hard_cases"])
    actions = {s: forced["stages"][s]["last_action"] for s in STAGES}
    assert actions["hard_cases"] == "ran" and actions["report"] == "ran"
    assert all(actions[s] == "skipped" for s in STAGES if s not in ("hard_cases", "report"))


def test_failing_gate_stops_with_the_gate_and_margin_and_keeps_earlier_artifacts(pipeline_run, capsys):
    root, config, _ = pipeline_run
    run = root / "run_quick"
    onnx = run / "export/onnx-int8/model_quantized.onnx"
    before = onnx.stat().st_mtime_ns
    cfg = yaml.safe_load(config.read_text())
    cfg["gates"]["max_student_drop"] = -100.0  # the student would have to beat the teacher by 100 points
    strict = root / "strict.yaml"
    strict.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as e:
        pipeline_main(["--config", str(strict), "--quick"])
    message = str(e.value)
    assert message.startswith("pipeline: error: stage 'gates' failed: gate max_student_drop failed:") and "\n" not in message
    assert "points, limit <= -100.0" in message
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["gates"]["status"] == "failed"
    assert json.loads((run / "gates.failed/gates.json").read_text())["gates"]
    assert onnx.stat().st_mtime_ns == before and (run / "teacher/fit/version_0/hf_model").is_dir()
    # The original thresholds pass again, without retraining anything.
    fixed = pipeline_main(["--config", str(config), "--quick"])
    assert fixed["stages"]["gates"]["last_action"] == "ran" and fixed["stages"]["student"]["last_action"] == "skipped"
    assert not (run / "gates.failed").exists()


def test_bad_pipeline_config_is_one_line(tmp_path, tiny_bert):
    cfg = pipeline_config(tiny_bert, tmp_path, tmp_path / "run", tmp_path / "missing.jsonl")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match=r"hard_cases.cases: .*missing.jsonl: file not found"):
        pipeline_main(["--config", str(path)])
    cfg["hard_cases"] = None
    cfg["teacher"]["config"] = str(tmp_path / "nope.yaml")
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match=r"teacher.config: .*nope.yaml: file not found"):
        pipeline_main(["--config", str(path)])
    cfg["teacher"]["config"] = str(REPO / "configs/sst2_classify.yaml")
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text('{"stages": {')  # damaged by hand
    with pytest.raises(SystemExit, match=r"run/manifest.json: not valid JSON .*; move it away") as e:
        pipeline_main(["--config", str(path)])
    assert "\n" not in str(e.value)
    assert (tmp_path / "run" / "manifest.json").read_text() == '{"stages": {'  # never overwritten
    with pytest.raises(SystemExit, match=r"--force: unknown stage\(s\) \['techer'\]"):
        (tmp_path / "run" / "manifest.json").unlink()
        pipeline_main(["--config", str(path), "--force", "techer"])


def test_force_and_quick_flags_are_normalised():
    assert _normalise(["--config", "c.yaml", "--quick", "--force", "teacher", "--force=export"]) == \
        ["--config", "c.yaml", "--quick=true", "--force=[teacher,export]"]


def test_baselines_on_fixtures(tiny_bert):
    texts = POSITIVE + NEGATIVE
    labels = [1] * len(POSITIVE) + [0] * len(NEGATIVE)
    result = run_baselines(str(tiny_bert), texts, labels, texts, labels, 2, shots=[2, 4], draws=3, latency_texts=4)
    assert set(result["results"]) == {"embedding_probe", "knn_2shot_cosine", "knn_2shot_euclidean", "knn_4shot_cosine",
                                      "knn_4shot_euclidean"}
    for r in result["results"].values():
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
    knn = result["results"]["knn_2shot_cosine"]
    assert len(knn["per_draw"]) == 3 and knn["shots"] == 2
    assert result["results"]["embedding_probe"]["head_parameters"] == result["embedding_dim"] + 1
    assert result["latency"]["b1"]["p50_ms"] > 0 and result["encoder_parameters"] > 0


def test_knn_votes_by_similarity_and_cosine_differs_from_euclidean():
    support = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    queries = np.array([[0.8, 0.2], [0.2, 0.8]], dtype=np.float32)
    assert knn_predict(support, y, queries, "cosine", 1, 2).tolist() == [0, 1]
    assert knn_predict(support, y, queries, "euclidean", 3, 2).tolist() == [0, 1]
    # Unnormalised vectors: same direction but far away -> cosine says class 0, Euclidean class 1.
    far = np.array([[10.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[0.9, 0.5]], dtype=np.float32)
    assert knn_predict(far, np.array([0, 1]), q, "cosine", 1, 2).tolist() == [0]
    assert knn_predict(far, np.array([0, 1]), q, "euclidean", 1, 2).tolist() == [1]
    with pytest.raises(ValueError, match="metric must be"):
        knn_predict(support, y, queries, "manhattan", 1, 2)


MODELS = {"teacher": {"accuracy": 0.92}, "student": {"accuracy": 0.905}, "student_onnx_int8": {"accuracy": 0.90}}


@pytest.mark.parametrize("gates, models, baseline, expected", [
    # all three gates judge the int8 student when there is one: 0.5 below fp32, 2.0 below the teacher, +2.0 over kNN
    (Gates(), MODELS, ("knn", 0.88), {"max_int8_drop": (0.5, True), "max_student_drop": (2.0, True),
                                      "min_margin_over_baselines": (2.0, True)}),
    (Gates(max_student_drop=1.5, min_margin_over_baselines=3.0), MODELS, ("probe", 0.88),
     {"max_int8_drop": (0.5, True), "max_student_drop": (2.0, False), "min_margin_over_baselines": (2.0, False)}),
    # without an int8 model the fp32 student is judged and the int8 gate does not apply; no baselines, no margin gate
    (Gates(), {k: MODELS[k] for k in ("teacher", "student")}, None, {"max_student_drop": (1.5, True)}),
    (Gates(max_int8_drop=None, max_student_drop=None, min_margin_over_baselines=None), MODELS, ("knn", 0.5), {}),
])
def test_gates_compare_the_final_student_in_points(gates, models, baseline, expected):
    checks = check_gates(models, gates, baseline)
    assert {c["gate"]: (pytest.approx(c["value_points"]), c["passed"]) for c in checks} == expected
    failed = [g for g, (_, ok) in expected.items() if not ok]
    message = gate_failures(checks)
    if not failed:
        assert message is None
    else:  # one line naming each failed gate with its value and limit
        assert "\n" not in message and all(f"gate {g} failed" in message for g in failed)
        assert "is +2.00 points, limit <= 1.5" in message and "limit >= 3.0" in message


def test_macro_f1_weights_classes_equally():
    s = classification_scores(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]), 2)
    assert s["accuracy"] == 0.75 and s["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


@pytest.mark.parametrize("name", ["sst2_pipeline.yaml", "sst2_pipeline_minilm.yaml", "steam_pipeline.yaml"])
def test_shipped_pipeline_configs_parse_and_their_fit_overrides_are_valid(name, capsys):
    from cli import main

    config = REPO / "configs" / name
    with pytest.raises(SystemExit) as e:
        pipeline_main(["--config", str(config), "--print_config"])
    assert e.value.code in (None, 0)
    cfg = yaml.safe_load(config.read_text())
    for stage in ("teacher", "student"):
        s = cfg[stage]
        for extra in ([], s.get("quick_args", [])):  # full and --quick overrides are known LightningCLI keys
            with pytest.raises(SystemExit) as e:
                main(["fit", "--config", str(REPO / s["config"]), *s["args"], *extra, "--print_config"])
            assert e.value.code in (None, 0), (stage, extra)
    assert Path(REPO / cfg["hard_cases"]["cases"]).is_file()
