"""Real weights, real data: all-MiniLM-L6-v2 fine-tuned on a slice of SST-2 (CI runs this)."""

from __future__ import annotations

import time

import pytest

from cli import main
from tests.conftest import REPO, SHARED

SST2 = SHARED / "data" / "sst2"


@pytest.mark.slow
@pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason="../shared/data/sst2 not present")
def test_minilm_on_sst2_slice_reaches_80_percent_in_5_minutes(tmp_path):
    start = time.perf_counter()
    cli = main([
        "fit", f"--config={REPO / 'configs' / 'sst2_classify.yaml'}",
        f"--data.init_args.data_dir={SST2}", "--data.init_args.limit_train=6000",
        "--trainer.max_epochs=1", "--trainer.val_check_interval=1.0", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ])
    elapsed = time.perf_counter() - start
    acc = float(cli.trainer.callback_metrics["val/acc"])
    print(f"SST-2 dev accuracy after 6,000 training rows: {acc:.4f} in {elapsed:.0f} s")
    assert acc >= 0.80, acc
    assert elapsed < 300, elapsed
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(tmp_path / "sst2_classify" / "version_0" / "hf_model"))
    assert clf("a gorgeous , witty , seductive movie .")[0]["label"] == "positive"
    assert clf("the plot is nothing but boilerplate clichés .")[0]["label"] == "negative"
