"""The HF model directory written during training works outside this project."""

from __future__ import annotations

import json

import pytest

from callbacks.hf_export import replace_dir
from cli import main
from tests.conftest import REPO


def test_fit_writes_a_pipeline_ready_directory(tiny_bert, sst2_dir, tmp_path):
    main([
        "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}",
        f"--model.init_args.model_name={tiny_bert}", f"--data.init_args.data_dir={sst2_dir}",
        "--trainer.max_steps=4", "--trainer.val_check_interval=2", "--data.init_args.batch_size=8", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ])
    run = tmp_path / "sst2_classify" / "version_0"
    out = run / "hf_model"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(out))
    result = clf(["a charming and often affecting journey", "a dull , lifeless mess"])
    assert [r["label"] in ("negative", "positive") for r in result] == [True, True]
    assert all(0.5 <= r["score"] <= 1 for r in result)
    # The Lightning run also kept its checkpoints and its resolved config.
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()


def test_replace_dir_keeps_the_old_directory_when_a_write_fails(tmp_path):
    target = tmp_path / "model"
    replace_dir(lambda d: (d / "weights").write_text("good"), target)

    def crash(d):
        (d / "weights").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_dir(crash, target)
    assert (target / "weights").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers
