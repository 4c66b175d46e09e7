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
every earlier stage's artifacts untouched. The code version is recorded but not part of the keys:
a commit that changes no input does not retrain a teacher.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

__all__ = ["FitStage", "Gates", "PipelineError", "STAGES", "StudentStage", "pipeline_main", "run_pipeline"]

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "baselines", "teacher", "cache", "student", "export", "gates", "benchmark", "hard_cases", "report")
DEPENDS = {
    "data": (), "baselines": ("data",), "teacher": ("data",), "cache": ("teacher",), "student": ("cache",),
    "export": ("student",), "gates": ("export", "teacher", "baselines"), "benchmark": ("export", "teacher"),
    "hard_cases": ("teacher", "student"), "report": ("gates", "benchmark", "hard_cases", "baselines"),
}


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage and what went wrong (for gates: which one and by how much)."""


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


@dataclass
class Gates:
    """Thresholds in accuracy points (dev set); None turns a gate off.

    Args:
        max_int8_drop: the int8 student may lose at most this much against the fp32 student.
        max_student_drop: the int8 student may be at most this far below the teacher.
        min_margin_over_baselines: the int8 student must beat the best no-fine-tuning baseline by this much.
        min_speedup: teacher (PyTorch fp32) over int8 student batch-1 p50 latency, checked after the benchmark.
            Off by default: latency depends on the machine's load, accuracy does not.
    """

    max_int8_drop: float | None = 1.0
    max_student_drop: float | None = 2.0
    min_margin_over_baselines: float | None = 0.0
    min_speedup: float | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_inputs(candidates: list[str]) -> dict[str, str]:
    """sha256 of every candidate that is an existing file, or of the files directly inside a directory."""
    out: dict[str, str] = {}
    for c in candidates:
        p = Path(c)
        try:
            if p.is_file():
                out[str(p)] = file_sha256(p)
            elif p.is_dir():
                for f in sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")):
                    out[str(f)] = file_sha256(f)
        except OSError:  # a name that only looks like a path (too long, unreadable)
            continue
    return out


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def data_inputs(config: str, args: list[str]) -> list[str]:
    """Every string under the YAML's ``data:`` section and every ``--data...`` override value: the data files."""
    with open(config) as f:
        data = (yaml.safe_load(f) or {}).get("data", {})
    overrides = [a.split("=", 1)[1] for a in args if a.startswith("--data.") and "=" in a]
    return _strings(data) + overrides


def code_version() -> dict:
    """The git commit of this checkout and whether it had uncommitted changes."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
            return {"git_commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"package_version": version("distillery")}
    except PackageNotFoundError:
        return {"git_commit": None, "note": "not a git checkout and not installed"}


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


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


class Pipeline:
    """Runs the stages of one config under one run directory; see the module docstring."""

    def __init__(self, teacher: FitStage, student: StudentStage, run_dir: Path, export: dict, benchmark: dict,
                 gates: Gates, hard_cases: dict | None, baselines: dict | None, quick: bool, force: set[str],
                 config: dict) -> None:
        self.teacher, self.student, self.run_dir = teacher, student, run_dir
        self.export_cfg, self.benchmark_cfg, self.gates = export, benchmark, gates
        self.hard_cases_cfg, self.baselines_cfg = hard_cases, baselines
        self.quick, self.force, self.config = quick, force, config
        self.enabled = [s for s in STAGES if not (s == "baselines" and not baselines or s == "hard_cases" and not hard_cases)]
        self.manifest_path = run_dir / "manifest.json"
        self.manifest = self._load_manifest()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _load_manifest(self) -> dict:
        if self.manifest_path.is_file():
            try:
                return json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError as e:
                raise PipelineError(f"{self.manifest_path}: not valid JSON ({e.msg}, line {e.lineno}); move it "
                                    "away to start the run afresh") from None
        return {"created": _now(), "stages": {}}

    def _save_manifest(self) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str))
        os.replace(tmp, self.manifest_path)

    def out(self, stage: str, *parts: str) -> Path:
        """A finished stage's artifact."""
        return self.run_dir.joinpath(stage, *parts)

    def record(self, stage: str) -> dict:
        return self.manifest["stages"][stage]

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

    def stage_key(self, stage: str) -> str:
        # Each run of a stage gets a fresh run_id, so a forced rerun invalidates what follows even when it finishes
        # within the same second as the run it replaced (the timestamps have one-second resolution).
        upstream = {u: [self.record(u)["key"], self.record(u).get("run_id", self.record(u)["finished"])]
                    for u in DEPENDS[stage] if u in self.enabled}
        return _key({"stage": stage, "params": self.params(stage), "upstream": upstream})

    def run_stage(self, stage: str, work: Callable[[Path], dict]) -> dict:
        """Run ``work(partial_dir) -> outputs`` unless the stage is done with the same key; swap in on success."""
        key = self.stage_key(stage)
        rec = self.manifest["stages"].get(stage)
        final = self.run_dir / stage
        if (rec and rec.get("status") == "done" and rec.get("key") == key and final.is_dir()
                and stage not in self.force and "all" not in self.force):
            rec["last_action"] = "skipped"
            print(f"pipeline: {stage}: unchanged since {rec['finished']}, skipped", flush=True)
            return rec["outputs"]
        partial = self.run_dir / f".{stage}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        print(f"pipeline: {stage}: running", flush=True)
        started, t0 = _now(), time.perf_counter()
        try:
            outputs = work(partial)
        except BaseException as e:
            failed = self.run_dir / f"{stage}.failed"
            if failed.exists():
                shutil.rmtree(failed)
            os.replace(partial, failed)
            message = str(e) if isinstance(e, PipelineError) else f"{type(e).__name__}: {e}"
            self.manifest["stages"][stage] = {
                **(rec or {}), "status": "failed", "key": key, "started": started, "finished": _now(),
                "wall_s": time.perf_counter() - t0, "error": message, "last_action": "failed",
                "failed_dir": str(failed),
            }
            self._save_manifest()
            if isinstance(e, KeyboardInterrupt):
                raise
            earlier = [s for s in STAGES[: STAGES.index(stage)] if self.run_dir.joinpath(s).is_dir()]
            raise PipelineError(f"stage '{stage}' failed: {message} (its partial output: {failed}; earlier "
                                f"stages kept: {', '.join(earlier) or 'none'})") from (None if isinstance(e, PipelineError) else e)
        old = self.run_dir / f".{stage}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        if old.exists():
            shutil.rmtree(old)
        shutil.rmtree(self.run_dir / f"{stage}.failed", ignore_errors=True)
        wall = time.perf_counter() - t0
        self.manifest["stages"][stage] = {"status": "done", "key": key, "started": started, "finished": _now(),
                                          "wall_s": wall, "outputs": outputs, "last_action": "ran",
                                          "run_id": uuid.uuid4().hex,  # what downstream keys name (stage_key)
                                          "code_version": self.manifest["code_version"]}  # --force may mix commits
        self._save_manifest()
        print(f"pipeline: {stage}: done in {wall:.1f} s", flush=True)
        return outputs

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
        best_name, best = None, None
        if self.baselines_cfg:
            base = json.loads(self.out("baselines", "baselines.json").read_text())["results"]
            best_name = max(base, key=lambda k: base[k]["accuracy"])
            best = base[best_name]["accuracy"]
        final = models.get("student_onnx_int8", models["student"])
        final_name = "student_onnx_int8" if "student_onnx_int8" in models else "student"
        g, checks = self.gates, []

        def check(name, what, value, limit, ok):
            checks.append({"gate": name, "what": what, "value_points": round(value, 3), "limit_points": limit,
                           "passed": bool(ok)})

        if g.max_int8_drop is not None and "student_onnx_int8" in models:
            drop = 100 * (models["student"]["accuracy"] - final["accuracy"])
            check("max_int8_drop", "student fp32 - int8 dev accuracy", drop, g.max_int8_drop, drop <= g.max_int8_drop)
        if g.max_student_drop is not None:
            drop = 100 * (models["teacher"]["accuracy"] - final["accuracy"])
            check("max_student_drop", f"teacher - {final_name} dev accuracy", drop, g.max_student_drop, drop <= g.max_student_drop)
        if g.min_margin_over_baselines is not None and best is not None:
            margin = 100 * (final["accuracy"] - best)
            check("min_margin_over_baselines", f"{final_name} - best baseline ({best_name}) dev accuracy", margin,
                  g.min_margin_over_baselines, margin >= g.min_margin_over_baselines)
        result = {"eval_file": str(self.out("data", "dev.jsonl")), "rows": len(texts), "models": models, "gates": checks}
        (partial / "gates.json").write_text(json.dumps(result, indent=2))
        failed = [c for c in checks if not c["passed"]]
        if failed:
            raise PipelineError("; ".join(
                f"gate {c['gate']} failed: {c['what']} is {c['value_points']:+.2f} points, limit "
                f"{'>=' if c['gate'] == 'min_margin_over_baselines' else '<='} {c['limit_points']}" for c in failed))
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
        self.manifest.update(config=self.config, code_version=code_version(), updated=_now(), quick=self.quick)
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
