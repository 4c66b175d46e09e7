"""Latency benchmark: teacher and student in PyTorch fp32, student in ONNX fp32 and int8, on real sentences.

For every variant, thread count and batch size it times two things over the same sentences:
``e2e`` (tokenize + run + argmax, what a user calls) and ``session`` (the model call alone on inputs
tokenized beforehand). Each variant runs in a fresh interpreter by default (``python -m export.benchmark``),
so its peak memory is its own, it imports only what it needs (the ONNX path never imports torch), and no
variant inherits another's warm caches or thread pools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bench_report import targets, write_markdown, write_plot
from .gate import classification_scores
from .runtime import find_onnx_file
from .timing import latency_stats, machine_info, peak_rss_mb, rss_mb, time_calls

__all__ = ["measure_variant", "run_benchmark"]

# name -> predictor kind; the order is the order of the report.
VARIANTS = {
    "teacher_torch_fp32": "torch",
    "student_torch_fp32": "torch",
    "student_onnx_fp32": "onnx",
    "student_onnx_int8": "onnx",
    "student_onnx_int8_optimum": "optimum",
}


def _load(kind: str, path: str, threads: int, max_length: int):
    if kind == "torch":
        from .baselines import TorchClassifier

        return TorchClassifier(path, threads, max_length)
    if kind == "optimum":
        from .baselines import OptimumClassifier

        return OptimumClassifier(path, find_onnx_file(path).name, threads, max_length)
    from .runtime import OnnxClassifier

    return OnnxClassifier(path, None, threads, max_length)


def _weights(kind: str, path: str) -> tuple[str, int]:
    """The weights file(s) a deployment ships, and their size in bytes."""
    if kind == "torch":
        files = [p for p in Path(path).iterdir() if p.suffix in (".safetensors", ".bin")]
        return ",".join(sorted(p.name for p in files)), sum(p.stat().st_size for p in files)
    onnx = find_onnx_file(path)
    extra = [p for p in Path(path).iterdir() if p.name.startswith(onnx.name) and p != onnx]  # external data
    return onnx.name, onnx.stat().st_size + sum(p.stat().st_size for p in extra)


def measure_variant(kind: str, path: str, texts: list[str], labels: list[int], threads: list[int],
                    batch_sizes: list[int], warmup: int, warmup_batches: int, passes: int, max_length: int) -> dict:
    """Time one variant at every (threads, batch size); accuracy and predictions come from the first thread count.

    Batch 1 runs every text once; larger batches run ``passes`` passes over the texts in order, and
    their statistics use full batches only (the last, smaller batch is run but not counted).
    """
    rss_before = rss_mb()
    file_name, size = _weights(kind, path)
    result = {"kind": kind, "path": str(path), "file": file_name, "file_size_bytes": size, "runs": [],
              "accuracy": {}, "macro_f1": {}, "load_s": {}}
    for i, t in enumerate(threads):
        start = time.perf_counter()
        model = _load(kind, path, t, max_length)
        result["load_s"][str(t)] = time.perf_counter() - start
        for bs in batch_sizes:
            batches = [texts[j : j + bs] for j in range(0, len(texts), bs)]
            calls = batches * (1 if bs == 1 else passes)
            full = [len(b) == bs for b in calls]
            w = warmup if bs == 1 else warmup_batches
            e2e, preds = time_calls(model.predict, calls, w)
            feeds = [model.encode(b) for b in batches]
            session, _ = time_calls(model.run, feeds * (len(calls) // len(batches)), w)
            run = {"threads": t, "batch_size": bs,
                   "e2e": latency_stats([s for s, f in zip(e2e, full) if f], bs),
                   "session": latency_stats([s for s, f in zip(session, full) if f], bs)}
            if run["e2e"]["n"] and run["session"]["n"]:
                run["e2e_over_session_p50"] = run["e2e"]["p50_ms"] / run["session"]["p50_ms"]
            result["runs"].append(run)
            if i == 0:
                first_pass = np.concatenate(preds[: len(batches)])
                scores = classification_scores(first_pass, np.asarray(labels), int(max(max(labels), first_pass.max())) + 1)
                result["accuracy"][f"b{bs}"] = scores["accuracy"]
                result["macro_f1"][f"b{bs}"] = scores["macro_f1"]
                if bs == 1:
                    result["predictions_b1"] = first_pass.tolist()
        del model
    result["rss_before_load_mb"] = rss_before
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _measure_in_child(job: dict) -> dict:
    """Run :func:`measure_variant` in a fresh Python process and return its result."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        # The child finds the same packages as this process (what multiprocessing's spawn does too).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.run([sys.executable, "-m", "export.benchmark", str(job_file), str(result_file)], env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark: measuring {job['kind']} {job['path']} failed (exit status "
                               f"{proc.returncode}; its error is printed above)")
        return json.loads(result_file.read_text())


def _resolve(export_dir: str | None, paths: dict[str, str | None]) -> dict[str, str]:
    """Fill the student paths from an export directory (hf/, onnx/, onnx-int8/) where not given."""
    if export_dir is not None:
        root = Path(export_dir)
        for name, sub in (("student_torch_fp32", "hf"), ("student_onnx_fp32", "onnx"), ("student_onnx_int8", "onnx-int8")):
            if paths.get(name) is None and (root / sub).is_dir():
                paths[name] = str(root / sub)
    return {k: v for k, v in paths.items() if v is not None}


def run_benchmark(
    eval_file: str,
    output_dir: str,
    teacher_torch: str | None = None,
    student_torch: str | None = None,
    student_onnx_fp32: str | None = None,
    student_onnx_int8: str | None = None,
    export_dir: str | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    limit: int | None = None,
    threads: list[int] = [1, 2],
    batch_sizes: list[int] = [1, 32],
    warmup: int = 20,
    warmup_batches: int = 3,
    passes: int = 1,
    max_length: int = 128,
    optimum_baseline: bool = True,
    isolate: bool = True,
) -> dict:
    """Measure latency, throughput, size, memory and accuracy of each given variant; write JSON, Markdown and PNG.

    Args:
        eval_file: labelled CSV/TSV/JSONL of real sentences (e.g. SST-2 ``dev.tsv``), timed in file order.
        output_dir: where ``benchmark.json``, ``benchmark.md`` and ``benchmark.png`` go.
        teacher_torch: HF directory of the teacher (PyTorch fp32).
        student_torch: HF directory of the student (PyTorch fp32), e.g. ``<export>/hf``.
        student_onnx_fp32: exported fp32 directory, e.g. ``<export>/onnx``.
        student_onnx_int8: exported int8 directory, e.g. ``<export>/onnx-int8``.
        export_dir: an export command's output directory; fills the three student paths not given.
        text_column: text column; None tries text, sentence, review, content.
        label_column: label column (class index or label name).
        limit: use only the first N sentences.
        threads: thread counts to measure (torch.set_num_threads / ORT intra_op_num_threads).
        batch_sizes: batch sizes to measure; 1 times every sentence, larger ones full batches in file order.
        warmup: untimed calls before timing at batch 1.
        warmup_batches: untimed calls before timing at larger batches.
        passes: passes over the sentences at batch sizes above 1.
        max_length: longest token sequence.
        optimum_baseline: also time the int8 model through optimum's ORTModel (the reference the lean path must beat).
        isolate: run each variant in a fresh process (own peak memory, no shared warm state).
    """
    from .stage import ExportError
    from .texts import read_labelled

    paths = _resolve(export_dir, {"teacher_torch_fp32": teacher_torch, "student_torch_fp32": student_torch,
                                  "student_onnx_fp32": student_onnx_fp32, "student_onnx_int8": student_onnx_int8})
    if not paths:
        raise ExportError("benchmark: give at least one of teacher_torch, student_torch, student_onnx_fp32, "
                          "student_onnx_int8 or export_dir")
    if optimum_baseline and "student_onnx_int8" in paths:
        paths["student_onnx_int8_optimum"] = paths["student_onnx_int8"]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(next(iter(paths.values())))
    names = [config.id2label[i] for i in range(config.num_labels)]
    texts, labels = read_labelled(eval_file, names, text_column, label_column, limit)
    result = {"machine": machine_info(), "eval_file": str(eval_file), "n_texts": len(texts),
              "settings": {"threads": threads, "batch_sizes": batch_sizes, "warmup": warmup, "warmup_batches": warmup_batches,
                           "passes": passes, "max_length": max_length, "isolate": isolate,
                           "peak_rss_scope": "per variant process" if isolate else "whole benchmark process"},
              "variants": {}}
    for name in (n for n in VARIANTS if n in paths):
        job = {"kind": VARIANTS[name], "path": paths[name], "texts": texts, "labels": labels, "threads": threads,
               "batch_sizes": batch_sizes, "warmup": warmup, "warmup_batches": warmup_batches, "passes": passes,
               "max_length": max_length}
        measured = _measure_in_child(job) if isolate else measure_variant(**job)
        result["variants"][name] = measured
        for run in measured["runs"]:
            print(f"benchmark: {name}: threads {run['threads']} batch {run['batch_size']}: e2e p50 "
                  f"{run['e2e'].get('p50_ms', float('nan')):.2f} ms, session p50 {run['session'].get('p50_ms', float('nan')):.2f} ms",
                  flush=True)
    # Agreement with the student in PyTorch shows what export and quantization changed; else with the first variant.
    ref_name = "student_torch_fp32" if "student_torch_fp32" in result["variants"] else next(iter(result["variants"]))
    reference = result["variants"][ref_name].get("predictions_b1")
    for measured in result["variants"].values():
        preds = measured.pop("predictions_b1", None)
        if reference is not None and preds is not None:
            measured["agreement_b1"] = {"with": ref_name, "value": float(np.mean(np.asarray(preds) == np.asarray(reference)))}
    result["targets"] = targets(result)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result["written"] = {"json": str(out / "benchmark.json"), "markdown": str(out / "benchmark.md"),
                         "png": str(out / "benchmark.png")}
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out / "benchmark.md")
    write_plot(result, out / "benchmark.png")
    return result


if __name__ == "__main__":
    # The child side of _measure_in_child: python -m export.benchmark JOB.json RESULT.json
    job_path, result_path = sys.argv[1:3]
    Path(result_path).write_text(json.dumps(measure_variant(**json.loads(Path(job_path).read_text()))))
