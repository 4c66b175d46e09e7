"""Exact resume after a SIGKILL, from a mid-epoch or an epoch-end checkpoint, for every training method; same seed, same result."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.ddp_utils import run_cli
from tests.test_distill import make_tiny_teacher

# 32 training rows in batches of 4: 8 steps an epoch, validation (and last.ckpt) every 4 steps.
STEPS = 16
# (killed after step, step of the newest last.ckpt then): killed at step 6, the checkpoint of step 4 is
# in the middle of epoch 0; killed at step 10, the checkpoint of step 8 is the end of epoch 0.
MID_EPOCH, EPOCH_END = (6, 4), (10, 8)
METHODS = ["sst2_classify", "sst2_lora", "sst2_distill"]
CASES = [(m, MID_EPOCH) for m in METHODS] + [("sst2_classify", EPOCH_END)]
# Every training config carries a second, unmonitored ModelCheckpoint that rewrites last.ckpt at each
# validation (a monitored save_last only writes it with a new best, Lightning >= 2.5).


def fit_args(config: str, tiny_bert: Path, sst2_dir: Path, run_dir: Path, teacher: Path) -> list[str]:
    args = [
        "fit", f"--config={REPO / 'configs' / (config + '.yaml')}", f"--model.init_args.model_name={tiny_bert}",
        f"--data.init_args.data_dir={sst2_dir}", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=8",
        f"--trainer.max_epochs={STEPS // 8}", "--trainer.val_check_interval=0.5", "--trainer.deterministic=true",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run_dir}",
        # A fixed version: the resumed run finds the killed run's checkpoints with --ckpt_path=last.
        f"--trainer.logger.init_args.save_dir={run_dir / 'runs'}", "--trainer.logger.init_args.version=0",
    ]
    if config == "sst2_distill":
        args += [f"--model.init_args.teacher={teacher}", f"--model.init_args.teacher_cache_dir={run_dir / 'cache'}",
                 "--model.init_args.keep_layers=[0,1]"]  # the config keeps 3 of 6 layers; the tiny BERT has 2
    if config == "sst2_lora":
        args += ["--model.init_args.lora_dropout=0.2"]  # dropout inside the adapters: RNG must be restored
    return args


def final_state(run_dir: Path) -> tuple[dict, int]:
    (path,) = run_dir.glob("runs/*/version_0/checkpoints/last.ckpt")
    ckpt = torch.load(path, weights_only=True)
    return ckpt["state_dict"], ckpt["global_step"]


def val_rows(run_dir: Path) -> dict[int, dict[str, str]]:
    """The validation metrics logged per step."""
    rows = {}
    for path in sorted(run_dir.glob("runs/*/version_0/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("val/acc"):
                    rows[int(row["step"])] = {k: v for k, v in row.items() if k.startswith("val/") and v}
    return rows


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.mark.parametrize("config,kill", CASES, ids=[f"{c}-{'mid' if k == MID_EPOCH else 'end'}" for c, k in CASES])
def test_sigkill_then_resume_is_exact(config, kill, tiny_bert, sst2_dir, teacher, tmp_path):
    kill_at, saved_at = kill
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    run_cli(fit_args(config, tiny_bert, sst2_dir, straight, teacher), cwd=tmp_path)

    kill = json.dumps({"class_path": "tests.ddp_utils.SigkillAtStep", "init_args": {"step": kill_at}})
    args = fit_args(config, tiny_bert, sst2_dir, crashed, teacher)
    run_cli([*args, f"--trainer.callbacks+={kill}"], cwd=tmp_path, expect_rc=-9)
    killed_state, killed_step = final_state(crashed)
    assert killed_step == saved_at
    run_cli([*args, "--ckpt_path=last"], cwd=tmp_path)

    (want, want_step), (got, got_step) = final_state(straight), final_state(crashed)
    assert want_step == got_step == STEPS
    assert any(not torch.equal(want[k], killed_state[k]) for k in want)  # the resumed steps changed weights
    for name, weight in want.items():
        assert torch.equal(got[name], weight), name
    # The resumed run's CSVLogger rewrites metrics.csv in version_0 from its first step on.
    want_val, got_val = val_rows(straight), val_rows(crashed)
    assert set(want_val) == {3, 7, 11, 15}  # 0-based steps of validation
    assert set(got_val) == {s for s in want_val if s >= saved_at}
    for step, metrics in got_val.items():
        assert metrics == want_val[step], step


def test_same_seed_gives_the_same_result(tiny_bert, sst2_dir, tmp_path):
    from cli import main

    def fit(name: str, seed: int):
        run_dir = tmp_path / name
        cli = main([
            "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}", f"--seed_everything={seed}",
            f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
            "--data.init_args.batch_size=8", "--trainer.max_epochs=1", "--trainer.val_check_interval=0.5",
            "--trainer.deterministic=true", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run_dir}",
            f"--trainer.logger.init_args.save_dir={run_dir / 'runs'}",
        ])
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        return metrics, {k: v.detach().clone() for k, v in cli.model.state_dict().items()}

    (m1, w1), (m2, w2), (_, w3) = fit("a", 42), fit("b", 42), fit("c", 43)
    assert {"val/acc", "val/loss", "train/loss"} <= set(m1)
    assert m1 == m2  # identical, not merely close
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)  # the seed does matter
