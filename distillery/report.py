"""The pipeline's report: one table of every model, the targets, gates, stage times and hard cases, plus a plot."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["model_rows", "write_report"]

LABELS = {
    "teacher": "teacher (PyTorch fp32)",
    "student": "student (PyTorch fp32)",
    "student_onnx_fp32": "student (ONNX fp32)",
    "student_onnx_int8": "**student (ONNX int8)**",
}
BENCH = {"teacher": "teacher_torch_fp32", "student": "student_torch_fp32", "student_onnx_fp32": "student_onnx_fp32",
         "student_onnx_int8": "student_onnx_int8"}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _wall(p, stage: str) -> float:
    rec = p.manifest["stages"].get(stage)
    return rec["wall_s"] if rec and rec.get("status") == "done" else 0.0


def model_rows(p) -> list[dict]:
    """One dict per model: parameters, size, accuracy, macro F1, b1 p50 latency, b32 throughput, training time."""
    from export.bench_report import find_run

    gates = _read(p.out("gates", "gates.json")) or {"models": {}}
    bench = _read(p.out("benchmark", "benchmark.json")) or {"variants": {}}
    threads = p.report_threads()
    export = p.manifest["stages"].get("export", {}).get("outputs", {})
    timings = export.get("timings_s", {})
    student_train = _wall(p, "cache") + _wall(p, "student")
    train_s = {"teacher": _wall(p, "teacher"), "student": student_train,
               "student_onnx_fp32": student_train + timings.get("hf", 0) + timings.get("onnx_export", 0) + timings.get("parity", 0),
               "student_onnx_int8": student_train + _wall(p, "export")}
    rows = []
    for name, scores in gates["models"].items():
        variant = bench["variants"].get(BENCH[name])
        b1 = find_run(variant, threads, 1) if variant else None
        b32 = find_run(variant, threads, 32) if variant else None
        rows.append({"model": name, "label": LABELS.get(name, name), "parameters": scores.get("parameters"),
                     "size_bytes": variant["file_size_bytes"] if variant else None,
                     "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                     "b1_p50_ms": b1["e2e"].get("p50_ms") if b1 else None,
                     "b32_samples_per_s": b32["e2e"].get("sentences_per_s") if b32 else None,
                     "train_s": train_s.get(name), "kind": "student" if name.startswith("student") else "teacher"})
    base = _read(p.out("baselines", "baselines.json")) if "baselines" in p.enabled else None
    if base:
        lat = base["latency"]
        for key, r in base["results"].items():
            extra = r.get("head_parameters", 0)
            label = ("embedding probe (frozen encoder + logistic regression)" if key == "embedding_probe" else
                     f"few-shot kNN, {r['shots']} per class, {r['metric']} (mean of {r['draws']} draws)")
            rows.append({"model": key, "label": label, "parameters": base["encoder_parameters"] + extra,
                         "size_bytes": base["encoder_size_bytes"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                         "accuracy_std": r.get("accuracy_std"), "b1_p50_ms": lat["b1"].get("p50_ms"),
                         "b32_samples_per_s": lat["b32"].get("sentences_per_s"), "train_s": r.get("train_s"),
                         "kind": "baseline"})
    return rows


def _f(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _size(n) -> str:
    return "—" if n is None else f"{n / 2**20:.1f} MiB"


def _table(rows: list[dict], threads: int) -> list[str]:
    head = (f"| model | parameters | file size | dev accuracy | macro F1 | batch-1 p50 latency ({threads} thr) | "
            f"throughput, batch 32 ({threads} thr) | training time |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f} %" + (f" ± {100 * r['accuracy_std']:.2f}" if r.get("accuracy_std") else "")
        lines.append(f"| {r['label']} | {_f(r['parameters'], ',')} | {_size(r['size_bytes'])} | {acc} | "
                     f"{100 * r['macro_f1']:.2f} | {_f(r['b1_p50_ms'], '.2f')} ms | {_f(r['b32_samples_per_s'], '.0f')}/s | "
                     f"{_f(r['train_s'], '.0f')} s |")
    return lines


def write_plot(rows: list[dict], path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"teacher": "tab:red", "student": "tab:blue", "baseline": "tab:gray"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if r["b1_p50_ms"] is None:
            continue
        ax.scatter(r["b1_p50_ms"], 100 * r["accuracy"], color=colours[r["kind"]], s=40)
        ax.annotate(r["label"].replace("*", "").split(" (mean")[0], (r["b1_p50_ms"], 100 * r["accuracy"]),
                    fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"batch-1 p50 latency, ms (log scale, {threads} threads)")
    ax.set_ylabel("dev accuracy, %")
    ax.set_title("accuracy against latency (red: teacher, blue: student, grey: no fine-tuning)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(p, out: Path) -> dict:
    """Write ``report.md``, ``accuracy_vs_latency.png`` and ``models.json`` into ``out``; return the headline numbers."""
    threads = p.report_threads()
    rows = model_rows(p)
    (out / "models.json").write_text(json.dumps(rows, indent=2))
    write_plot(rows, out / "accuracy_vs_latency.png", threads)
    m = p.manifest
    data = m["stages"]["data"]["outputs"]
    bench = _read(p.out("benchmark", "benchmark.json")) or {}
    machine = bench.get("machine", {})
    by = {r["model"]: r for r in rows}
    final = by.get("student_onnx_int8") or by.get("student")
    teacher = by["teacher"]
    lines = [f"# Pipeline report: `{p.run_dir}`", "",
             f"- updated {m.get('updated')}; code {json.dumps(m.get('code_version'))}; quick mode: {m.get('quick')}",
             f"- data: {data['datamodule']}, {data['rows']['train']:,} training rows, dev = {data['rows']['val']:,} rows "
             f"(`data/dev.jsonl`); every accuracy below is on that dev set",
             f"- machine: {machine.get('cpu_model', machine.get('cpu', '?'))}; latency at {threads} thread(s), "
             "tokenization included (end to end)", "", "## Models", ""]
    lines += _table(rows, threads)
    lines += ["", "Training time: the teacher's fit; for the student, caching the teacher's logits plus its own fit "
              "(not counting the teacher); the exports add their own time. Baselines: embedding the examples they "
              "learn from (plus the probe's logistic regression).", "", "![accuracy against latency](accuracy_vs_latency.png)", ""]
    lines += ["## Targets", "", "| target | value | met |", "|---|---:|:---:|"]
    if final.get("b1_p50_ms") and teacher.get("b1_p50_ms"):
        speed = teacher["b1_p50_ms"] / final["b1_p50_ms"]
        lines.append(f"| int8 student at least 10x faster than the teacher at batch 1 | {speed:.1f}x | {'yes' if speed >= 10 else 'no'} |")
    gap = 100 * (teacher["accuracy"] - final["accuracy"])
    lines.append(f"| int8 student within 2 points of the teacher | {gap:+.2f} points below | {'yes' if gap <= 2 else 'no'} |")
    baselines = [r for r in rows if r["kind"] == "baseline"]
    if baselines:
        best = max(baselines, key=lambda r: r["accuracy"])
        margin = 100 * (final["accuracy"] - best["accuracy"])
        lines.append(f"| int8 student above every baseline (best: {best['model']}) | {margin:+.2f} points | {'yes' if margin > 0 else 'no'} |")
    gates = (_read(p.out("gates", "gates.json")) or {}).get("gates", [])
    if gates:
        lines += ["", "## Gates", "", "| gate | what | value (points) | limit | passed |", "|---|---|---:|---:|:---:|"]
        lines += [f"| {g['gate']} | {g['what']} | {g['value_points']:+.2f} | {g['limit_points']} | {'yes' if g['passed'] else 'NO'} |"
                  for g in gates]
    lines += ["", "## Stages", "", "| stage | this run | wall time of its last run | finished |", "|---|---|---:|---|"]
    total = 0.0
    for s in p.enabled:
        rec = m["stages"].get(s)
        if s == "report":
            lines.append("| report | ran | (this) | |")
            continue
        total += rec["wall_s"]
        lines.append(f"| {s} | {rec['last_action']} | {rec['wall_s']:.1f} s | {rec['finished']} |")
    lines.append(f"| **all stages** | | **{total:.0f} s ({total / 60:.1f} min)** | |")
    export = m["stages"].get("export", {}).get("outputs", {})
    if export.get("timings_s"):
        lines += ["", "Export steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in export["timings_s"].items()) +
                  f"; int8: {json.dumps(export.get('quantization'))}"]
    hard = p.out("hard_cases", "hard_cases.txt")
    if "hard_cases" in p.enabled and hard.is_file():
        lines += ["", "## Hard cases and sarcasm pair consistency", "",
                  f"Cases: `{p.hard_cases_cfg['cases']}`; pairs: `{p.hard_cases_cfg.get('sarcasm')}`. A `*` marks a wrong "
                  "prediction; the number after a class is the model's confidence.", "", "```", hard.read_text().rstrip(), "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"file": "report.md", "plot": "accuracy_vs_latency.png", "all_stages_s": total,
            "final_accuracy": final["accuracy"], "teacher_accuracy": teacher["accuracy"]}
