"""A NaN loss stops the run with the step and batch named, and the last checkpoint survives."""

from __future__ import annotations

import pytest
import torch

from callbacks.finite_guard import NonFiniteLossError
from cli import main
from lit_modules import TextClassifier
from tests.conftest import REPO


class NaNAfterTwoSteps(TextClassifier):
    """A classifier whose loss turns NaN at the third step."""

    def training_loss(self, logits, batch):
        loss = super().training_loss(logits, batch)
        return loss * float("nan") if self.global_step >= 2 else loss


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tiny_bert, sst2_dir, tmp_path, monkeypatch):
    import lit_modules

    monkeypatch.setattr(lit_modules, "NaNAfterTwoSteps", NaNAfterTwoSteps, raising=False)
    args = [
        "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}",
        "--model.class_path=lit_modules.NaNAfterTwoSteps",
        f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
        "--data.init_args.batch_size=4", "--trainer.max_steps=6", "--trainer.val_check_interval=2",
        "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    with pytest.raises(NonFiniteLossError, match=r"at global step 2, epoch 0, batch 2, rows \['\d+'"):
        main(args)
    ckpt = tmp_path / "sst2_classify" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
