"""One command from data to a benchmarked int8 student: ``python cli.py pipeline --config configs/sst2_pipeline.yaml``.

Stages, in order (each writes under ``<run_dir>/<stage>/``):

=========== ==================================================================================
data        the datamodule's train and dev splits as JSONL (what every later stage evaluates on)
baselines   no fine-tuning: frozen-embedding probe and few-shot kNN (sentence-transformers)
teacher     ``cli.py fit`` of the teacher config (full or LoRA fine-tuning)
cache       the teacher's logits for the student's train/dev texts (``cli.py cache-teacher``)
student     ``cli.py fit`` of the distillation config, reading the cache
export      ONNX fp32 (parity-checked) and int8 (dynamic or static) of the student
gates       dev accuracy and macro F1 of every model; int8-vs-fp32, student-vs-teacher and
            student-vs-baselines gates
benchmark   latency, throughput, size and memory (``cli.py benchmark``), optional speed-up gate
hard_cases  hand-written tricky sentences and sarcasm pair consistency, teacher against student
report      ``report/report.md`` with the model table, stage times, gates and hard cases, plus
            ``report/accuracy_vs_latency.png``
=========== ==================================================================================

``<run_dir>/manifest.json`` records the resolved config, the code version (git commit and whether the
tree was dirty), hashes of the input files, and each stage's status, key, timing and outputs.
A stage runs again only when its key changes: its own settings, the files it reads (configs, data,
case files) or the run of a stage it depends on. ``--force STAGE`` (repeatable, or ``all``) redoes a
stage and therefore everything downstream of it. A stage works in ``.<stage>.partial/`` and replaces
its directory only when it succeeds; a failure keeps what it wrote in ``<stage>.failed/`` and leaves
every earlier stage's artifacts untouched (``distillery.stages``). The code version is recorded but not
part of the keys: a commit that changes no input does not retrain a teacher (``distillery.provenance``).
The accuracy gates are ``distillery.gates``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .gates import Gates, check_gates, gate_failures
from .provenance import code_version, data_inputs, file_sha256, hash_inputs, now
from .stages import PipelineError, StageRunner

__all__ = ["FitStage", "Gates", "PipelineError", "STAGES", "StudentStage", "pipeline_main", "run_pipeline"]

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "baselines", "teacher", "cache", "student", "export", "gates", "benchmark", "hard_cases", "report")
DEPENDS = {
    "data": (), "baselines": ("data",), "teacher": ("data",), "cache": ("teacher",), "student": ("cache",),
    "export": ("student",), "gates": ("export", "teacher", "baselines"), "benchmark": ("export", "teacher"),
    "hard_cases": ("teacher", "student"), "report": ("gates", "benchmark", "hard_cases", "baselines"),
}


@dataclass
class FitStage:
    """A ``python cli.py fit`` run.

    Args:
        config: the experiment YAML (e.g. ``configs/sst2_classify.yaml``).
        args: overrides, exactly as on the command line (``--trainer.max_epochs=1``).
        quick_args: more overrides applied in ``--quick`` mode (e.g. a training slice).
    """

    config: str
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)


@dataclass
class StudentStage(FitStage):
    """The distillation ``fit``; ``init_from_teacher`` builds the student from the fine-tuned teacher's own layers
    (``keep_layers`` of it, DistilBERT-style; same tokenizer) instead of the config's pretrained ``model_name``."""

    init_from_teacher: bool = False


def _jsonl(path: Path, texts: list[str], labels: list[int], names: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t, y in zip(texts, labels):
            f.write(json.dumps({"text": t, "label": names[y]}, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path, names: list[str]) -> tuple[list[str], list[int]]:
    index = {n: i for i, n in enumerate(names)}
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(index[row["label"]])
    return texts, labels


class Pipeline(StageRunner):
    """Runs the stages of one config under one run directory; see the module docstring."""

    stages, depends = STAGES, DEPENDS

    def __init__(self, teacher: FitStage, student: StudentStage, run_dir: Path, export: dict, benchmark: dict,
                 gates: Gates, hard_cases: dict | None, baselines: dict | None, quick: bool, force: set[str],
                 config: dict) -> None:
        self.teacher, self.student = teacher, student
        self.export_cfg, self.benchmark_cfg, self.gates = export, benchmark, gates
        self.hard_cases_cfg, self.baselines_cfg = hard_cases, baselines
        self.quick, self.config = quick, config
        enabled = [s for s in STAGES if not (s == "baselines" and not baselines or s == "hard_cases" and not hard_cases)]
        super().__init__(run_dir, enabled, force)

    # -- what each stage's key covers ------------------------------------------------------------

    def params(self, stage: str) -> dict:
        """What a stage's result depends on besides its upstream stages."""
        def fit(s: FitStage) -> dict:
            return {"config": s.config, "config_sha256": file_sha256(Path(s.config)), "args": s.args,
                    "quick_args": s.quick_args if self.quick else []}

        if stage == "data":
            return {**fit(self.teacher), "inputs": self.manifest["inputs"]["data"]}
        if stage == "teacher":
            return fit(self.teacher)
        if stage in ("cache", "student"):
            return {**fit(self.student), "init_from_teacher": self.student.init_from_teacher}
        if stage == "export":
            return self.export_cfg
        if stage == "gates":
            return dataclasses.asdict(self.gates)
        if stage == "benchmark":
            return {**self.benchmark_cfg, "min_speedup": self.gates.min_speedup}
        if stage == "hard_cases":
            cfg = self.hard_cases_cfg or {}
            return {**cfg, "inputs": hash_inputs([v for k, v in cfg.items() if k in ("cases", "sarcasm") and v])}
        if stage == "baselines":
            return self.baselines_cfg or {}
        return {"quick": self.quick}

    # -- helpers ---------------------------------------------------------------------------------

    def _fit_argv(self, s: FitStage) -> list[str]:
        return ["--config", s.config, *s.args, *(s.quick_args if self.quick else [])]

    def _cli(self, argv: list[str], log: Path) -> None:
        """Run ``python cli.py ARGV`` in a child process, its output both on the console and in ``log``."""
        cmd = [sys.executable, str(REPO / "cli.py"), *argv]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        tail: list[str] = []
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for line in proc.stdout:
                f.write(line)
                sys.stdout.write(line)
                tail = (tail + [line.rstrip()])[-3:]
            status = proc.wait()
        if status != 0:
            last = next((t for t in reversed(tail) if t.strip()), "")
            raise PipelineError(f"`cli.py {argv[0]}` exited with status {status}: {last} (full log: {log})")

    def _fit(self, s: FitStage, partial: Path, extra: list[str]) -> dict:
        logs = ["--trainer.logger.init_args.save_dir", str(partial), "--trainer.logger.init_args.name", "fit",
                "--trainer.logger.init_args.version", "0", "--trainer.default_root_dir", str(partial),
                "--trainer.enable_progress_bar", "false"]
        self._cli(["fit", *self._fit_argv(s), *extra, *logs], partial / "fit.log")
        run = partial / "fit" / "version_0"
        if not (run / "hf_model").is_dir():
            raise PipelineError(f"{s.config}: fit finished without an HF model export in {run / 'hf_model'} "
                                "(the config needs the callbacks.HFModelExport callback)")
        best = sorted(run.glob("checkpoints/best-*.ckpt"))
        throughput = json.loads((run / "throughput.json").read_text()) if (run / "throughput.json").is_file() else {}
        rel = lambda p: str(p.relative_to(partial))  # noqa: E731
        return {"hf_model": rel(run / "hf_model"), "log_dir": rel(run), "best_checkpoint": rel(best[0]) if best else None,
                "fit_wall_s": throughput.get("fit_wall_s"), "steady_samples_per_s": throughput.get("steady_samples_per_s")}

    def teacher_hf(self) -> str:
        return str(self.out("teacher", self.record("teacher")["outputs"]["hf_model"]))

    def student_hf(self) -> str:
        return str(self.out("student", self.record("student")["outputs"]["hf_model"]))

    def _student_extra(self, cache_dir: Path) -> list[str]:
        extra = ["--model.init_args.teacher", self.teacher_hf(), "--model.init_args.teacher_cache_dir", str(cache_dir)]
        if self.student.init_from_teacher:
            extra += ["--model.init_args.model_name", self.teacher_hf()]
        return extra

    def label_names(self) -> list[str]:
        return self.record("data")["outputs"]["label_names"]

    def dev(self) -> tuple[list[str], list[int]]:
        return _read_jsonl(self.out("data", "dev.jsonl"), self.label_names())

    def report_threads(self) -> int:
        return max(self.benchmark_cfg.get("threads", [1, 2]))

    # -- the stages --------------------------------------------------------------------------------

    def stage_data(self, partial: Path) -> dict:
        sys.path.insert(0, str(REPO))
        from cli import _cli

        cli = _cli(self._fit_argv(self.teacher), run=False)
        dm = cli.datamodule
        dm.prepare_data()
        dm.setup("fit")
        names = list(dm.label_names)
        out = {"label_names": names, "datamodule": type(dm).__name__, "rows": {}, "sha256": {}, "dropped": {}}
        for split, file in (("train", "train.jsonl"), ("val", "dev.jsonl")):
            s = dm.splits[split]
            keep = [i for i, y in enumerate(s.labels) if y >= 0]  # unlabelled transfer texts are not for evaluation
            _jsonl(partial / file, [s.texts[i] for i in keep], [s.labels[i] for i in keep], names)
            out["rows"][split] = len(keep)
            out["sha256"][file] = file_sha256(partial / file)
            out["dropped"][split] = dict(s.dropped)
        return out

    def stage_baselines(self, partial: Path) -> dict:
        from distillery.baselines import run_baselines

        cfg = dict(self.baselines_cfg or {})
        names = self.label_names()
        train = _read_jsonl(self.out("data", "train.jsonl"), names)
        result = run_baselines(cfg.pop("encoder"), *train, *self.dev(), len(names),
                               **{"threads": self.report_threads(), **cfg})
        (partial / "baselines.json").write_text(json.dumps(result, indent=2))
        return {"file": "baselines.json", **{k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]}
                                             for k, v in result["results"].items()}}

    def stage_teacher(self, partial: Path) -> dict:
        return self._fit(self.teacher, partial, [])

    def stage_cache(self, partial: Path) -> dict:
        argv = ["cache-teacher", *self._fit_argv(self.student), *self._student_extra(partial / "logits")]
        self._cli(argv, partial / "cache.log")
        lines = [ln for ln in (partial / "cache.log").read_text().splitlines() if ln.startswith("{")]
        report = json.loads(lines[-1]) if lines else {}
        for split in report.values():
            split["path"] = str(Path(split["path"]).relative_to(partial))
        return {"splits": report}

    def stage_student(self, partial: Path) -> dict:
        return self._fit(self.student, partial, self._student_extra(self.out("cache", "logits")))

    def stage_export(self, partial: Path) -> dict:
        from export.stage import export_model

        cfg = {"quantization": "dynamic", **self.export_cfg}
        summary = export_model(source=self.student_hf(), output_dir=str(partial), eval_file=str(self.out("data", "dev.jsonl")),
                               label_column="label", text_column="text", max_accuracy_drop=None, **cfg)
        return {"dirs": {d: d for d in ("hf", "onnx", "onnx-int8") if (partial / d).is_dir()},
                "timings_s": summary["timings_s"], "onnx_size_bytes": summary["onnx"]["size_bytes"],
                "fusion": summary["onnx"]["fusion"],
                "int8_size_bytes": summary.get("quantization", {}).get("size_bytes"),
                "quantization": {k: v for k, v in summary.get("quantization", {}).items() if k in ("mode", "isa", "per_channel")}}

    def stage_gates(self, partial: Path) -> dict:
        import numpy as np

        from distillery.teacher import load_teacher
        from export.gate import classification_scores, predict_all
        from export.runtime import OnnxClassifier

        texts, labels = self.dev()
        y, n = np.asarray(labels), len(self.label_names())
        models: dict[str, dict] = {}
        for name, path in (("teacher", self.teacher_hf()), ("student", self.student_hf())):
            model = load_teacher(path)
            preds = model.logits(texts, batch_size=64, max_length=self.export_cfg.get("max_length", 128)).argmax(-1).numpy()
            models[name] = {**classification_scores(preds, y, n), "parameters": model.num_parameters}
            del model
        max_length = self.export_cfg.get("max_length", 128)
        for name, sub, bs in (("student_onnx_fp32", "onnx", 32), ("student_onnx_int8", "onnx-int8", 1)):
            if self.out("export", sub).is_dir():  # dynamic int8 depends on the batch: score it at batch 1
                preds = predict_all(OnnxClassifier(self.out("export", sub), max_length=max_length), texts, bs)
                models[name] = {**classification_scores(preds, y, n), "parameters": models["student"]["parameters"],
                                "eval_batch_size": bs}
        best_baseline = None  # (name, accuracy)
        if self.baselines_cfg:
            base = json.loads(self.out("baselines", "baselines.json").read_text())["results"]
            name = max(base, key=lambda k: base[k]["accuracy"])
            best_baseline = (name, base[name]["accuracy"])
        checks = check_gates(models, self.gates, best_baseline)
        result = {"eval_file": str(self.out("data", "dev.jsonl")), "rows": len(texts), "models": models, "gates": checks}
        (partial / "gates.json").write_text(json.dumps(result, indent=2))
        failure = gate_failures(checks)
        if failure:
            raise PipelineError(failure)
        return {"file": "gates.json", "models": models, "gates": checks}

    def stage_benchmark(self, partial: Path) -> dict:
        from export.bench_report import find_run
        from export.benchmark import run_benchmark

        cfg = dict(self.benchmark_cfg)
        result = run_benchmark(eval_file=str(self.out("data", "dev.jsonl")), output_dir=str(partial),
                               teacher_torch=self.teacher_hf(), export_dir=str(self.out("export")),
                               text_column="text", label_column="label", **cfg)
        t = self.report_threads()
        p50 = {}
        for name in ("teacher_torch_fp32", "student_onnx_int8"):
            run = find_run(result["variants"].get(name, {"runs": []}), t, 1)
            p50[name] = run["e2e"]["p50_ms"] if run else None
        speedup = p50["teacher_torch_fp32"] / p50["student_onnx_int8"] if all(p50.values()) else None
        if self.gates.min_speedup is not None and speedup is not None and speedup < self.gates.min_speedup:
            raise PipelineError(f"gate min_speedup failed: the int8 student is {speedup:.1f}x faster than the teacher "
                                f"at batch 1 ({t} threads), limit >= {self.gates.min_speedup}x")
        return {"file": "benchmark.json", "threads": t, "speedup_b1": speedup}

    def stage_hard_cases(self, partial: Path) -> dict:
        from distillery.hard_cases import hard_case_report
        from distillery.teacher import load_teacher

        cfg = self.hard_cases_cfg or {}
        models = {"teacher": load_teacher(self.teacher_hf()), "student": load_teacher(self.student_hf())}
        text, result = hard_case_report(models, cfg["cases"], cfg.get("sarcasm"), cfg.get("max_length", 128))
        (partial / "hard_cases.txt").write_text(text + "\n")
        (partial / "hard_cases.json").write_text(json.dumps(result, indent=2))
        return {"file": "hard_cases.json", "scores": {n: s["accuracy"] for n, s in result["scores"].items()},
                "pair_consistency": {n: p["share"] for n, p in result.get("pair_consistency", {}).items()}}

    def stage_report(self, partial: Path) -> dict:
        from distillery.report import write_report

        return write_report(self, partial)

    def run(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        unknown = self.force - set(STAGES) - {"all"}
        if unknown:
            raise PipelineError(f"--force: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)} or all")
        self.manifest.update(config=self.config, code_version=code_version(), updated=now(), quick=self.quick)
        configs = [self.teacher.config, self.student.config]
        self.manifest["inputs"] = {"configs": hash_inputs(configs),
                                   "data": hash_inputs(data_inputs(self.teacher.config, self.teacher.args + self.teacher.quick_args)),
                                   "hard_cases": hash_inputs([(self.hard_cases_cfg or {}).get("cases") or ""])}
        (self.run_dir / "pipeline.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._save_manifest()
        total = time.perf_counter()
        for stage in self.enabled:
            self.run_stage(stage, getattr(self, f"stage_{stage}"))
        self.manifest["last_run_wall_s"] = time.perf_counter() - total
        self._save_manifest()
        print(f"pipeline: done; report: {self.out('report', 'report.md')}", flush=True)
        return self.manifest


def run_pipeline(
    teacher: FitStage,
    student: StudentStage,
    run_dir: str = "runs/pipeline",
    export: dict = {},
    benchmark: dict = {},
    gates: Gates = Gates(),
    hard_cases: dict | None = None,
    baselines: dict | None = None,
    quick: bool = False,
    quick_export: dict = {},
    quick_benchmark: dict = {},
    quick_baselines: dict = {},
    quick_gates: dict = {},
    force: list[str] = [],
) -> dict:
    """Teacher -> cache -> student -> ONNX -> int8 -> gates -> benchmark -> hard cases -> report, skipping unchanged stages.

    Args:
        teacher: the teacher's ``fit`` (config, overrides).
        student: the distillation ``fit``; its teacher and cache directory are filled in by the pipeline.
        run_dir: every artifact, the manifest and the report go here (``<run_dir>_quick`` in quick mode).
        export: options of ``cli.py export`` (quantization, per_channel, max_length, ...).
        benchmark: options of ``cli.py benchmark`` (threads, batch_sizes, passes, optimum_baseline, ...).
        gates: the accuracy (and optional speed) gates.
        hard_cases: ``{cases: JSONL, sarcasm: iSarcasmEval CSV or null, max_length: 128}``; null skips the stage.
        baselines: ``run_baselines`` options (``encoder`` required, shots, metrics, probe_train_limit, ...);
            null skips them.
        quick: a few-minute run on a slice: adds each fit stage's ``quick_args`` and the ``quick_*`` options.
        quick_export: export options that replace ``export``'s in quick mode.
        quick_benchmark: benchmark options that replace ``benchmark``'s in quick mode.
        quick_baselines: baseline options that replace ``baselines``' in quick mode.
        quick_gates: gate thresholds that replace ``gates``' in quick mode (a slice trains weaker models).
        force: stages to redo even if unchanged (``all`` for every stage); later stages follow.
    """
    config = {"teacher": dataclasses.asdict(teacher), "student": dataclasses.asdict(student), "run_dir": run_dir,
              "export": export, "benchmark": benchmark, "gates": dataclasses.asdict(gates), "hard_cases": hard_cases,
              "baselines": baselines, "quick": quick, "quick_export": quick_export, "quick_benchmark": quick_benchmark,
              "quick_baselines": quick_baselines, "quick_gates": quick_gates}
    if quick:
        export, benchmark = {**export, **quick_export}, {**benchmark, **quick_benchmark}
        baselines = {**baselines, **quick_baselines} if baselines is not None else None
        run_dir = run_dir.rstrip("/") + "_quick"
        unknown = set(quick_gates) - {f.name for f in dataclasses.fields(Gates)}
        if unknown:
            raise PipelineError(f"quick_gates: unknown gate(s) {sorted(unknown)}")
        gates = dataclasses.replace(gates, **quick_gates)
    for s, what in ((teacher, "teacher"), (student, "student")):
        if not Path(s.config).is_file():
            raise PipelineError(f"{what}.config: {s.config}: file not found")
    if baselines is not None and "encoder" not in baselines:
        raise PipelineError("baselines.encoder: missing (a sentence-transformers model, e.g. sentence-transformers/all-MiniLM-L6-v2)")
    if hard_cases is not None and not Path(hard_cases.get("cases", "")).is_file():
        raise PipelineError(f"hard_cases.cases: {hard_cases.get('cases')}: file not found")
    forced = {s for f in force for s in f.split(",") if s}
    return Pipeline(teacher, student, Path(run_dir), export, benchmark, gates, hard_cases, baselines, quick, forced,
                    config).run()


def _normalise(argv: list[str]) -> list[str]:
    """``--quick`` alone means ``--quick=true``; ``--force A --force B`` collects into one list."""
    out, forced, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--quick" and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("--quick=true")
        elif a == "--force" and i + 1 < len(argv):
            forced.append(argv[i + 1])
            i += 1
        elif a.startswith("--force="):
            forced.append(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out + ([f"--force=[{','.join(forced)}]"] if forced else [])


def pipeline_main(argv: list[str] | None = None) -> dict:
    """``python cli.py pipeline --config configs/sst2_pipeline.yaml [--quick] [--force STAGE]``."""
    from jsonargparse import CLI

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return CLI(run_pipeline, args=_normalise(list(sys.argv[1:] if argv is None else argv)), as_positional=False,
                   prog="cli.py pipeline")
    except PipelineError as e:
        raise SystemExit(f"pipeline: error: {e}") from None
