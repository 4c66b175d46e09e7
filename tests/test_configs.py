"""Every shipped YAML runs fit, validate, test and predict through the real CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from cli import main
from tests.conftest import REPO
from tests.test_distill import make_tiny_teacher

# *_pipeline*.yaml configure `cli.py pipeline`, not one fit; tests/test_pipeline.py checks them.
EXPERIMENTS = sorted(p for p in (REPO / "configs").glob("*.yaml") if "_pipeline" not in p.stem)
# configs/export/ holds configs of the export tools, not of training; tests/test_export.py runs them.
# configs/trainer/ holds multi-process overlays: Lightning's DDP launcher re-executes sys.argv, so
# they cannot run inside pytest; tests/test_ddp.py runs each one through cli.py in a subprocess.
OVERLAYS = sorted(p for p in (REPO / "configs").glob("*/**/*.yaml") if p.parent.name not in ("export", "trainer"))
TRAINER_OVERLAYS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
# An overlay directory's configs apply on top of this experiment (sst2_classify.yaml otherwise).
OVERLAY_BASES = {"lora_studies": "steam_lora.yaml"}


def data_overrides(config: Path, tmp_path: Path, sst2_dir: Path, steam_csv: Path) -> list[str]:
    """Point each datamodule at its fixture."""
    data = yaml.safe_load(config.read_text())["data"]["class_path"].rsplit(".", 1)[-1]
    if data == "SST2DataModule":
        return [f"--data.init_args.data_dir={sst2_dir}"]
    if data == "SteamReviewsDataModule":
        return [f"--data.init_args.csv_path={steam_csv}", "--data.init_args.val_fraction=0.2", "--data.init_args.test_fraction=0.2"]
    raise AssertionError(f"{config}: no fixture for {data}; add one here")


def model_overrides(config: Path, tmp_path: Path) -> list[str]:
    """Distillation configs get a tiny teacher; layer selections are cut to fit the 2-layer tiny BERT."""
    init = yaml.safe_load(config.read_text())["model"].get("init_args", {})
    args = []
    if "teacher" in init:
        args.append(f"--model.init_args.teacher={make_tiny_teacher(tmp_path / 'teacher')}")
    if init.get("keep_layers"):
        args.append("--model.init_args.keep_layers=[0,1]")
    return args


def common(tiny_bert: Path, tmp_path: Path) -> list[str]:
    return [
        f"--model.init_args.model_name={tiny_bert}",
        "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
    ]


def test_configs_are_found():
    assert EXPERIMENTS, "no experiment configs found"


def test_every_trainer_overlay_has_a_subprocess_test():
    from tests.test_ddp import SUBPROCESS_TESTED

    assert {p.name for p in TRAINER_OVERLAYS} <= SUBPROCESS_TESTED


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.name)
@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_experiment_config_runs(config, subcommand, tiny_bert, tmp_path, sst2_dir, steam_csv):
    args = [subcommand, f"--config={config}", *common(tiny_bert, tmp_path)]
    args += data_overrides(config, tmp_path, sst2_dir, steam_csv) + model_overrides(config, tmp_path)
    cli = main(args)
    # The dataset's label names reached the model through the link, not through the YAML.
    assert cli.model.label_names == cli.datamodule.label_names
    assert cli.model.hparams.num_labels == cli.datamodule.num_labels
    assert cli.datamodule.tokenizer_name == str(tiny_bert)
    if subcommand == "fit":
        assert (tmp_path / "hf_model" / "config.json").is_file()
    if subcommand == "predict":
        with open(tmp_path / "predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and {r["label"] for r in rows} <= {"negative", "positive"}
        assert all(0.5 <= float(r["score"]) <= 1.0 for r in rows)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_overlay_config_runs(overlay, tiny_bert, tmp_path, sst2_dir, steam_csv):
    base = REPO / "configs" / OVERLAY_BASES.get(overlay.parent.name, "sst2_classify.yaml")
    args = ["fit", f"--config={base}", f"--config={overlay}", *common(tiny_bert, tmp_path)]
    cli = main(args + data_overrides(base, tmp_path, sst2_dir, steam_csv))
    # The overlay's model settings won over the base's.
    for key, value in (yaml.safe_load(overlay.read_text()).get("model") or {}).get("init_args", {}).items():
        if key in cli.model.hparams:
            assert cli.model.hparams[key] == value, key
