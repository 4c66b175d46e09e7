"""Benchmark reporting: the issue's targets, a Markdown table and an accuracy-vs-latency plot."""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_run", "targets", "write_markdown", "write_plot"]


def find_run(variant: dict, threads: int, batch_size: int) -> dict | None:
    """The run of ``variant`` at ``threads`` and ``batch_size``, or None."""
    return next((r for r in variant["runs"] if r["threads"] == threads and r["batch_size"] == batch_size), None)


def _p50(result: dict, name: str, threads: int, mode: str = "e2e") -> float | None:
    variant = result["variants"].get(name)
    run = find_run(variant, threads, 1) if variant else None
    return run[mode].get("p50_ms") if run else None


def targets(result: dict) -> dict:
    """The export issue's targets, at batch 1 and the largest thread count measured, where measurable.

    - int8 student dev accuracy at most 0.5 points below the fp32 ONNX student;
    - int8 student end-to-end p50 at least 10x lower than the teacher in PyTorch fp32;
    - our end-to-end p50 within 1.25x of the bare session on the same file;
    - our end-to-end p50 no slower than optimum's ORTModel on the same file.
    """
    threads = max(result["settings"]["threads"])
    v = result["variants"]
    out = {}

    def add(key, value, target, ok):
        if value is not None:
            out[key] = {"value": value, "target": target, "met": bool(ok(value)), "threads": threads, "batch_size": 1}

    if "student_onnx_fp32" in v and "student_onnx_int8" in v:
        drop = 100 * (v["student_onnx_fp32"]["accuracy"]["b1"] - v["student_onnx_int8"]["accuracy"]["b1"])
        add("int8_accuracy_drop_points", drop, "<= 0.5", lambda x: x <= 0.5)
    int8 = _p50(result, "student_onnx_int8", threads)
    teacher = _p50(result, "teacher_torch_fp32", threads)
    if int8 and teacher:
        add("teacher_torch_over_int8_e2e_p50", teacher / int8, ">= 10", lambda x: x >= 10)
    bare = _p50(result, "student_onnx_int8", threads, "session")
    if int8 and bare:
        add("int8_e2e_over_session_p50", int8 / bare, "<= 1.25", lambda x: x <= 1.25)
    optimum = _p50(result, "student_onnx_int8_optimum", threads)
    if int8 and optimum:
        add("int8_e2e_over_optimum_e2e_p50", int8 / optimum, "<= 1.0", lambda x: x <= 1.0)
    return out


def _f(x, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def write_markdown(result: dict, path: str | Path) -> None:
    """One row per variant, thread count and batch size; then the targets and the machine."""
    m = result["machine"]
    lines = [f"# Latency benchmark on {result['n_texts']} sentences of `{result['eval_file']}`", "",
             "e2e = tokenize + run + argmax; session = the model call alone on inputs tokenized beforehand. "
             "Latencies in ms per call; sentences/s from the e2e mean.", "",
             "| variant | threads | batch | e2e p50 | e2e p95 | e2e p99 | session p50 | session p95 | session p99 "
             "| e2e/session | sent/s | accuracy | size MB | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        for r in v["runs"]:
            e, s = r["e2e"], r["session"]
            acc = v["accuracy"].get(f"b{r['batch_size']}")
            lines.append(
                f"| {name} | {r['threads']} | {r['batch_size']} | {_f(e.get('p50_ms'))} | {_f(e.get('p95_ms'))} | "
                f"{_f(e.get('p99_ms'))} | {_f(s.get('p50_ms'))} | {_f(s.get('p95_ms'))} | {_f(s.get('p99_ms'))} | "
                f"{_f(r.get('e2e_over_session_p50'))} | {_f(e.get('sentences_per_s'), '.1f')} | "
                f"{_f(None if acc is None else 100 * acc)} | {v['file_size_bytes'] / 1e6:.1f} | {v['peak_rss_mb']:.0f} |")
    if result.get("targets"):
        lines += ["", "## Targets (batch 1)", "", "| target | value | wanted | met |", "|---|---|---|---|"]
        for key, t in result["targets"].items():
            lines.append(f"| {key} (threads {t['threads']}) | {t['value']:.3f} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", "## Machine", "", f"- CPU: {m['cpu_model']} ({m['machine']}), {m['os_cpu_count']} CPUs, "
              f"{m['usable_cpus']} usable; int8 target {m['int8_isa']}",
              f"- ISA flags: {' '.join(m['isa_flags'])}",
              f"- load average at start (1/5/15 min): {m['loadavg_1_5_15']}",
              f"- threads: torch default {m['torch_default_threads']}, interop {m['torch_interop_threads']}; "
              f"env {m['thread_env'] or 'none'}; peak RSS scope: {result['settings']['peak_rss_scope']}",
              f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
              f"- settings: {result['settings']}", ""]
    Path(path).write_text("\n".join(lines))


def write_plot(result: dict, path: str | Path) -> None:
    """Accuracy against batch-1 e2e p50 latency (log scale), one point per variant, marker area by file size."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FormatStrFormatter

    threads = max(result["settings"]["threads"])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (name, v) in enumerate(result["variants"].items()):
        run = find_run(v, threads, 1)
        acc = v["accuracy"].get("b1")
        if run is None or acc is None or "p50_ms" not in run["e2e"]:
            continue
        mb = v["file_size_bytes"] / 1e6
        ax.scatter(run["e2e"]["p50_ms"], 100 * acc, s=30 + 6 * mb, alpha=0.6, label=name)
        # Alternate label sides so that neighbours (int8 and its optimum baseline) stay readable.
        ax.annotate(f"{name}\n{mb:.1f} MB", (run["e2e"]["p50_ms"], 100 * acc), fontsize=7,
                    xytext=(6, 6 if i % 2 == 0 else -18), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.3, y=0.2)
    ax.set_xlabel(f"batch-1 end-to-end p50 latency, ms ({threads} thread{'s' if threads != 1 else ''}, log scale)")
    ax.set_ylabel("accuracy, %")
    ax.set_title(f"{Path(result['eval_file']).name}: accuracy vs latency (marker area ~ file size)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
