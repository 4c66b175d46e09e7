"""SLURM detection: under srun, Lightning's SLURMEnvironment takes world size and ranks from the environment."""

from __future__ import annotations

import pytest
from lightning.pytorch.plugins.environments import SLURMEnvironment

from cli import TextCLI
from datamodules import TextClassificationDataModule
from lit_modules import TextClassifier
from tests.conftest import REPO

# What srun exports to task 5 of `sbatch --nodes=2 --ntasks-per-node=4` (docs/distributed.md).
SLURM_ENV = {
    "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "distillery", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NNODES": "2", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
    "SLURM_NODELIST": "node[01-02]", "SLURM_JOB_NODELIST": "node[01-02]",
}


@pytest.fixture
def slurm(monkeypatch):
    from lightning_utilities.core.rank_zero import rank_zero_only

    # Building a Trainer under these variables sets the process-wide rank_zero_only.rank to 5; put it
    # back afterwards, or every later test in this process would skip its rank-zero work (logging, writes).
    monkeypatch.setattr(rank_zero_only, "rank", getattr(rank_zero_only, "rank", 0))
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)


def test_cli_trainer_detects_slurm(slurm, tiny_bert, sst2_dir, tmp_path):
    # cli.main's parser and links, with run=False: the Trainer is built, nothing is launched.
    cli = TextCLI(TextClassifier, TextClassificationDataModule, subclass_mode_model=True, subclass_mode_data=True,
                  auto_configure_optimizers=False, run=False, args=[
                      f"--config={REPO / 'configs' / 'sst2_classify.yaml'}", f"--config={REPO / 'configs' / 'trainer' / 'ddp.yaml'}",
                      f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
                      "--trainer.devices=4", "--trainer.num_nodes=2", f"--trainer.default_root_dir={tmp_path}",
                  ])
    env = cli.trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment)
    assert env.creates_processes_externally  # srun starts the 8 tasks; Lightning must not fork
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (8, 5, 1, 1)
    assert env.main_address == "node01"
    assert (cli.trainer.world_size, cli.trainer.global_rank, cli.trainer.local_rank) == (8, 5, 1)
    assert not cli.trainer.is_global_zero  # so rank-zero-only writes are skipped on this task


def test_interactive_shell_is_not_treated_as_a_batch_job(monkeypatch):
    # `srun --pty bash` then `python cli.py`: the job name says interactive; Lightning ignores SLURM.
    for key, value in {**SLURM_ENV, "SLURM_JOB_NAME": "bash"}.items():
        monkeypatch.setenv(key, value)
    assert not SLURMEnvironment.detect()
