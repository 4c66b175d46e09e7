"""Two-process CPU DDP (gloo) through the real CLI: metrics reduce across ranks, files are written once."""

from __future__ import annotations

import csv
import json
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
    # TrainThroughput reduces over ranks: the memory of the whole job, not only rank zero's.
    throughput = json.loads((log_dir / "throughput.json").read_text())
    assert throughput["world_size"] == 2
    assert throughput["peak_rss_mib_all_ranks"] > 1.5 * throughput["peak_rss_mib"]

    # The same weights, validated by 2 ranks (4 of the 8 dev rows each, sync_dist) and by 1 process.
    ckpt = f"--ckpt_path={log_dir / 'checkpoints' / 'last.ckpt'}"
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v2", f"--config={DDP}", ckpt), cwd=tmp_path)
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v1", ckpt), cwd=tmp_path)
    two, one = val_metrics(tmp_path / "v2"), val_metrics(tmp_path / "v1")
    assert {"val/acc", "val/f1", "val/loss"} <= set(one)
    assert two == pytest.approx(one, abs=1e-6)


# -- training under DDP equals training in one process over the same global batch ---------------

def no_dropout_bert(directory: Path) -> Path:
    """The tiny BERT with dropout off: two ranks draw other dropout masks than one process would."""
    from tests.conftest import make_tiny_bert

    make_tiny_bert(directory)
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def last_state(run_dir: Path) -> dict[str, torch.Tensor]:
    (path,) = run_dir.glob("runs/*/version_0/checkpoints/last.ckpt")
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("method", ["sst2_classify", "sst2_lora", "sst2_distill"])
def test_ddp_training_matches_one_process_with_the_same_global_batch(method, sst2_dir, tmp_path):
    """2 ranks x 4 rows per step against 1 process x 8 rows: the same weights and validation metrics.

    Lightning's DistributedSampler and our EpochShuffleSampler draw the same seeded permutation, and
    rank r takes every second index of it, so each global batch holds the same rows (length grouping
    off: it would batch by length per rank). Gradients are averaged over equal halves, which equals
    the mean over the whole batch.
    """
    from tests.test_distill import make_tiny_teacher

    bert = no_dropout_bert(tmp_path / "bert")
    extra = ["--data.init_args.group_by_length=false", "--model.init_args.classifier_dropout=0.0",
             "--trainer.max_epochs=2", "--trainer.val_check_interval=1.0", "--trainer.gradient_clip_val=null"]
    if method == "sst2_lora":
        extra += ["--model.init_args.lora_dropout=0.0"]
    if method == "sst2_distill":
        extra += [f"--model.init_args.teacher={make_tiny_teacher(tmp_path / 'teacher')}",
                  f"--model.init_args.teacher_cache_dir={tmp_path / 'cache'}", "--model.init_args.keep_layers=[0,1]"]

    def fit(run_dir: Path, *more: str) -> str:
        a = args("fit", bert, sst2_dir, run_dir, *more, *extra)
        a[1] = f"--config={REPO / 'configs' / (method + '.yaml')}"
        return run_cli(a, cwd=tmp_path)

    output = fit(tmp_path / "ddp", f"--config={DDP}", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=2")
    assert "Starting with 2 processes" in output
    fit(tmp_path / "one", "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=2")

    two, one = last_state(tmp_path / "ddp"), last_state(tmp_path / "one")
    assert set(two) == set(one)
    assert not any(k.startswith("teacher") for k in one)  # the teacher is never part of the student's state
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=2e-5, rtol=1e-4, msg=name)
    runs = lambda d: sorted(p.name for p in (d / "runs").glob("*/version_*"))  # noqa: E731
    assert runs(tmp_path / "ddp") == runs(tmp_path / "one") == ["version_0"]  # written once, by rank zero

    def val(run_dir):
        (path,) = run_dir.glob("runs/*/version_0/metrics.csv")
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in r.items() if k.startswith("val/") and v} for r in csv.DictReader(f) if r.get("val/acc")]

    got, want = val(tmp_path / "ddp"), val(tmp_path / "one")
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)


def test_ddp_validation_counts_every_row_once_with_an_odd_number_of_rows(tiny_bert, sst2_dir, tmp_path):
    """7 dev rows on 2 ranks: 4 + 3, never 4 + 4 with a repeated row; loss and metrics equal one process."""
    lines = (sst2_dir / "dev.tsv").read_text().splitlines()
    (sst2_dir / "dev.tsv").write_text("\n".join(lines[:8]) + "\n")  # header + 7 rows
    run_cli(args("fit", tiny_bert, sst2_dir, tmp_path / "fit", "--trainer.max_steps=2"),
            cwd=tmp_path)
    (ckpt,) = (tmp_path / "fit").glob("runs/*/version_0/checkpoints/last.ckpt")
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v2", f"--config={DDP}", f"--ckpt_path={ckpt}"), cwd=tmp_path)
    run_cli(args("validate", tiny_bert, sst2_dir, tmp_path / "v1", f"--ckpt_path={ckpt}"), cwd=tmp_path)
    two, one = val_metrics(tmp_path / "v2"), val_metrics(tmp_path / "v1")
    assert {"val/acc", "val/f1", "val/loss"} <= set(one)
    assert two == pytest.approx(one, abs=1e-6)
    acc = one["val/acc"] * 7
    assert abs(acc - round(acc)) < 1e-5  # a multiple of 1/7: seven rows, each once
