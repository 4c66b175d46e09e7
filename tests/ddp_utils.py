"""Run ``cli.py`` in a subprocess: multi-process DDP runs and runs that kill themselves mid-epoch.

DDP cannot run inside pytest: Lightning's launcher re-executes ``sys.argv`` for every rank after
the first. A run that must die by SIGKILL cannot run inside pytest either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from tests.conftest import REPO

__all__ = ["SigkillAtStep", "run_cli"]


def run_cli(args: list[str], cwd: Path, timeout: float = 600, expect_rc: int | None = 0) -> str:
    """Run ``python cli.py *args`` and return its combined output.

    Args:
        args: the CLI arguments, subcommand first.
        cwd: working directory of the run.
        timeout: seconds before both ranks are killed and the test fails (a hang is usually a
            collective called on one rank only).
        expect_rc: the exit status the run must end with; None accepts any.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # Its own process group, so that a hang kills every rank, not only rank zero.
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)  # seconds alone; minutes on a loaded 2-core machine
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"cli.py {args[0]} hung:\n" + output[-4000:])
    if expect_rc is not None:
        assert proc.returncode == expect_rc, f"exit status {proc.returncode}:\n" + output[-4000:]
    return output


class SigkillAtStep(L.Callback):
    """Kill this process with SIGKILL when training reaches ``step``, as a cluster's OOM killer would.

    It fires at the start of the next batch, after every callback (ModelCheckpoint runs last)
    has handled the end of step ``step``: the checkpoint of that step is on disk, nothing after.

    Args:
        step: the global step after which the process dies.
    """

    def __init__(self, step: int = 1) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
