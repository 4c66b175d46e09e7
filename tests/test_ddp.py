"""Two-process CPU DDP (gloo) through the real CLI: metrics reduce across ranks, files are written once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.ddp_utils import run_cli

DDP = REPO / "configs" / "trainer" / "ddp.yaml"
# The configs/trainer/ overlays run here, in subprocesses (tests/test_configs.py checks the list).
SUBPROCESS_TESTED = {"ddp.yaml"}


def args(subcommand: str, tiny_bert: Path, sst2_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        subcommand, f"--config={REPO / 'configs' / 'sst2_classify.yaml'}", *extra,
        f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
        "--data.init_args.eval_batch_size=2", "--trainer.enable_progress_bar=false", "--trainer.deterministic=true",
        f"--trainer.default_root_dir={run_dir}", f"--trainer.logger.init_args.save_dir={run_dir / 'runs'}",
    ]


def val_metrics(run_dir: Path) -> dict[str, float]:
    """The validation metrics that the CSVLogger wrote (on rank zero, after the cross-rank reduction)."""
    (path,) = run_dir.glob("runs/*/version_0/metrics.csv")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/acc")]
    assert len(rows) == 1, rows
    return {k: float(v) for k, v in rows[0].items() if k.startswith("val/") and v}


def test_two_process_ddp_classification(tiny_bert, sst2_dir, tmp_path):
    # 32 train rows: 2 ranks x 4 per step = the global batch of a single process at 8.
    ddp_dir = tmp_path / "ddp"
    output = run_cli(args("fit", tiny_bert, sst2_dir, ddp_dir, f"--config={DDP}", "--data.init_args.batch_size=4",
                          "--trainer.max_epochs=1", "--trainer.val_check_interval=1.0"), cwd=tmp_path)
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    runs = ddp_dir / "runs" / "sst2_classify"
    assert [p.name for p in runs.iterdir()] == ["version_0"]  # one log dir for both ranks
    log_dir = runs / "version_0"
    assert sorted(p.name for p in (log_dir / "checkpoints").iterdir()) == ["best-step=4.ckpt", "last.ckpt"]
    assert (log_dir / "hf_model" / "config.json").is_file()
    assert not list(log_dir.glob("**/*.tmp*"))  # atomic writes left nothing behind
    assert torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4

    # The same weights, validated by 2 ranks (4 of the 8 dev rows each, sync_dist) and by 1 process.
    ckpt = f"--ckpt_path={log_dir / 'checkpoints' / 'last.ckpt'}"
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v2", f"--config={DDP}", ckpt), cwd=tmp_path)
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v1", ckpt), cwd=tmp_path)
    two, one = val_metrics(tmp_path / "v2"), val_metrics(tmp_path / "v1")
    assert {"val/acc", "val/f1", "val/loss"} <= set(one)
    assert two == pytest.approx(one, abs=1e-6)
