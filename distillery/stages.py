"""Named stages under one run directory, recorded in ``manifest.json``: skip what is unchanged, redo what is forced.

A stage's key hashes its own settings (:meth:`StageRunner.params`) and the runs of the stages it depends on, so a
changed setting or a rerun upstream invalidates everything downstream. A stage works in ``.<stage>.partial/`` and
replaces ``<stage>/`` only when it succeeds; a failure keeps its output in ``<stage>.failed/`` and leaves every
earlier stage's artifacts untouched. The manifest is rewritten atomically after every stage.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from .provenance import digest, now

__all__ = ["PipelineError", "StageRunner"]


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage and what went wrong (for gates: which one and by how much)."""


class StageRunner:
    """Runs stages in order and keeps their manifest; subclasses name the stages and implement them.

    Args:
        run_dir: every stage's directory and ``manifest.json`` go here.
        enabled: the stages this run has, in order (a subset of ``stages``).
        force: stages to redo even if unchanged (``all`` for every stage); later stages follow through their keys.
    """

    stages: tuple[str, ...] = ()
    depends: dict[str, tuple[str, ...]] = {}  # stage -> the stages whose results it reads

    def __init__(self, run_dir: Path, enabled: list[str], force: set[str]) -> None:
        self.run_dir, self.enabled, self.force = run_dir, enabled, force
        self.manifest_path = run_dir / "manifest.json"
        self.manifest = self._load_manifest()

    def params(self, stage: str) -> dict:
        """What a stage's result depends on besides its upstream stages."""
        return {}

    def _load_manifest(self) -> dict:
        if self.manifest_path.is_file():
            try:
                return json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError as e:
                raise PipelineError(f"{self.manifest_path}: not valid JSON ({e.msg}, line {e.lineno}); move it "
                                    "away to start the run afresh") from None
        return {"created": now(), "stages": {}}

    def _save_manifest(self) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str))
        os.replace(tmp, self.manifest_path)

    def out(self, stage: str, *parts: str) -> Path:
        """A finished stage's artifact."""
        return self.run_dir.joinpath(stage, *parts)

    def record(self, stage: str) -> dict:
        return self.manifest["stages"][stage]

    def stage_key(self, stage: str) -> str:
        # Each run of a stage gets a fresh run_id, so a forced rerun invalidates what follows even when it finishes
        # within the same second as the run it replaced (the timestamps have one-second resolution).
        upstream = {u: [self.record(u)["key"], self.record(u).get("run_id", self.record(u)["finished"])]
                    for u in self.depends[stage] if u in self.enabled}
        return digest({"stage": stage, "params": self.params(stage), "upstream": upstream})

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
        started, t0 = now(), time.perf_counter()
        try:
            outputs = work(partial)
        except BaseException as e:
            failed = self.run_dir / f"{stage}.failed"
            if failed.exists():
                shutil.rmtree(failed)
            os.replace(partial, failed)
            message = str(e) if isinstance(e, PipelineError) else f"{type(e).__name__}: {e}"
            self.manifest["stages"][stage] = {
                **(rec or {}), "status": "failed", "key": key, "started": started, "finished": now(),
                "wall_s": time.perf_counter() - t0, "error": message, "last_action": "failed",
                "failed_dir": str(failed),
            }
            self._save_manifest()
            if isinstance(e, KeyboardInterrupt):
                raise
            earlier = [s for s in self.stages[: self.stages.index(stage)] if self.run_dir.joinpath(s).is_dir()]
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
        self.manifest["stages"][stage] = {"status": "done", "key": key, "started": started, "finished": now(),
                                          "wall_s": wall, "outputs": outputs, "last_action": "ran",
                                          "run_id": uuid.uuid4().hex,  # what downstream keys name (stage_key)
                                          "code_version": self.manifest["code_version"]}  # --force may mix commits
        self._save_manifest()
        print(f"pipeline: {stage}: done in {wall:.1f} s", flush=True)
        return outputs
