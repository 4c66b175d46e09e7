"""The wandb overlay logs offline, with no account and no network."""

from __future__ import annotations

from cli import main
from tests.conftest import REPO


def test_wandb_overlay_writes_an_offline_run(tiny_bert, sst2_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    main([
        "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}", f"--config={REPO / 'configs' / 'logger' / 'wandb_offline.yaml'}",
        f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
        "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
    ])
    runs = list(tmp_path.rglob("offline-run-*"))
    assert runs, f"no offline wandb run under {tmp_path}"
    assert any(p.suffix == ".wandb" for p in runs[0].rglob("*"))
