"""Latency benchmark: every field of the JSON, the report files, timing primitives, per-process memory."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO
from tests.test_export import exported, sst2_files, trained_hf  # noqa: F401  (session fixtures)

STATS = {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "sentences_per_s"}


def test_time_calls_warms_up_untimed_then_times_every_input():
    from export.timing import time_calls

    calls = []
    seconds, outputs = time_calls(lambda x: calls.append(x) or 2 * x, [1, 2, 3], warmup=5)
    assert calls == [1, 2, 3, 1, 2, 1, 2, 3] and outputs == [2, 4, 6] and len(seconds) == 3


def test_latency_stats_percentiles_and_throughput():
    from export.timing import latency_stats

    stats = latency_stats([i / 1000 for i in range(1, 101)], batch_size=4)  # 1..100 ms
    assert set(stats) == STATS and stats["n"] == 100
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p99_ms"] == pytest.approx(99.01)
    assert stats["sentences_per_s"] == pytest.approx(4 * 1000 / 50.5)


def test_benchmark_json_has_every_field(exported, trained_hf, sst2_files, tmp_path):  # noqa: F811
    from export.cli import benchmark_main

    out = tmp_path / "bench"
    result = benchmark_main(["--eval_file", str(sst2_files / "dev.tsv"), "--output_dir", str(out),
                             "--export_dir", str(exported[0]), "--teacher_torch", str(trained_hf),
                             "--batch_sizes", "[1, 4]", "--warmup", "2", "--warmup_batches", "1", "--isolate", "false"])
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["variants"].keys() == result["variants"].keys() == {
        "teacher_torch_fp32", "student_torch_fp32", "student_onnx_fp32", "student_onnx_int8", "student_onnx_int8_optimum"}
    machine = saved["machine"]
    for key in ("cpu_model", "isa_flags", "int8_isa", "os_cpu_count", "usable_cpus", "loadavg_1_5_15",
                "torch_default_threads", "versions"):
        assert key in machine, key
    assert saved["n_texts"] == 8 and saved["settings"]["threads"] == [1, 2]
    for name, v in saved["variants"].items():
        assert v["file_size_bytes"] > 0 and v["peak_rss_mb"] > 0 and v["rss_before_load_mb"] > 0, name
        assert v["accuracy"]["b1"] == 1.0 and set(v["accuracy"]) == {"b1", "b4"}, name
        assert v["agreement_b1"]["with"] == "student_torch_fp32"
        assert {(r["threads"], r["batch_size"]) for r in v["runs"]} == {(1, 1), (1, 4), (2, 1), (2, 4)}
        for run in v["runs"]:
            assert set(run["e2e"]) == STATS and set(run["session"]) == STATS
            assert run["e2e"]["n"] == (8 if run["batch_size"] == 1 else 2)
            assert run["e2e_over_session_p50"] > 0
    assert saved["variants"]["student_onnx_int8"]["file"] == "model_quantized.onnx"
    assert set(saved["targets"]) == {"int8_accuracy_drop_points", "teacher_torch_over_int8_e2e_p50",
                                     "int8_e2e_over_session_p50", "int8_e2e_over_optimum_e2e_p50"}
    table = (out / "benchmark.md").read_text()
    assert table.count("| student_onnx_int8 |") == 4 and "## Machine" in table and "## Targets" in table
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_isolates_each_variant_in_its_own_process(exported, sst2_files, tmp_path):  # noqa: F811
    from export.benchmark import run_benchmark
    from export.timing import peak_rss_mb

    result = run_benchmark(str(sst2_files / "dev.tsv"), str(tmp_path), student_onnx_int8=str(exported[0] / "onnx-int8"),
                           threads=[1], batch_sizes=[1], warmup=1, optimum_baseline=False, isolate=True, limit=4)
    (variant,) = result["variants"].values()
    assert variant["runs"][0]["e2e"]["n"] == 4 and result["settings"]["peak_rss_scope"] == "per variant process"
    # The child's peak is its own: the ONNX path never imports torch, which this test process holds.
    assert 0 < variant["peak_rss_mb"] < peak_rss_mb() - 150, (variant["peak_rss_mb"], peak_rss_mb())


def test_benchmark_without_variants_is_one_clear_error(sst2_files, tmp_path):  # noqa: F811
    from export.cli import benchmark_main

    with pytest.raises(SystemExit, match="give at least one of teacher_torch"):
        benchmark_main(["--eval_file", str(sst2_files / "dev.tsv"), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "export").glob("benchmark_*.yaml")), ids=lambda p: p.name)
def test_benchmark_config_runs(config, exported, sst2_files, tmp_path):  # noqa: F811
    from export.cli import benchmark_main

    assert "eval_file" in yaml.safe_load(config.read_text())
    result = benchmark_main(["--config", str(config), "--eval_file", str(sst2_files / "dev.tsv"), "--output_dir", str(tmp_path),
                             "--student_onnx_int8", str(exported[0] / "onnx-int8"), "--limit", "4", "--warmup", "1",
                             "--warmup_batches", "1", "--passes", "1", "--batch_sizes", "[1, 2]", "--isolate", "false"])
    assert {"student_onnx_int8", "student_onnx_int8_optimum"} == set(result["variants"])
