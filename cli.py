"""Command line: ``python cli.py fit|validate|test|predict --config configs/X.yaml``."""

from __future__ import annotations

import os

from lightning.pytorch.cli import ArgsType, LightningCLI

__all__ = ["TextCLI", "main"]


class TextCLI(LightningCLI):
    """LightningCLI with the dataset-derived values linked into the model, never repeated."""

    def add_arguments_to_parser(self, parser) -> None:
        # The backbone is named once (under model); the datamodule's tokenizer follows it.
        parser.link_arguments("model.init_args.model_name", "data.init_args.tokenizer_name")
        parser.link_arguments("data.num_labels", "model.init_args.num_labels", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.init_args.label_names", apply_on="instantiate")


# Subcommands that are not Trainer methods: name -> (module, function taking an argument list).
TOOLS = {
    "export": ("export.cli", "export_main"),
    "benchmark": ("export.cli", "benchmark_main"),
    "predict-file": ("export.cli", "predict_main"),
    "cache-teacher": ("cli", "cache_teacher_main"),
    "pipeline": ("distillery.pipeline", "pipeline_main"),
}


def _cli(args: ArgsType, run: bool = True) -> TextCLI:
    # Import here so that importing cli.py does no work.
    from datamodules import TextClassificationDataModule
    from lit_modules import TextClassifier

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return TextCLI(
        TextClassifier,
        TextClassificationDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def cache_teacher_main(argv: list[str]) -> dict:
    """``python cli.py cache-teacher --config configs/sst2_distill.yaml``: stage 1 of distillation alone.

    Runs the config's teacher over the train and validation texts and writes the logit cache that
    ``fit`` with the same config then reads; prints one JSON line per split (path, hit or built, rows).
    """
    import json

    from lit_modules.distill import DistillationClassifier

    cli = _cli(argv, run=False)
    if not isinstance(cli.model, DistillationClassifier):
        raise SystemExit(f"cache-teacher: error: the config's model is {type(cli.model).__name__}, "
                         "not a DistillationClassifier (nothing to cache)")
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    report = cli.model.build_teacher_cache(cli.datamodule)
    print(json.dumps(report), flush=True)
    return report


def main(args: ArgsType = None):
    """Run the CLI; ``args`` (a list or dict) replaces ``sys.argv`` for tests and scripts.

    ``fit|validate|test|predict`` go to LightningCLI; the names in ``TOOLS`` to their own parsers.
    """
    import importlib
    import sys

    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
    if argv and argv[0] in TOOLS:
        module, function = TOOLS[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:])
    cli = _cli(args)
    _destroy_process_group()
    return cli


def _destroy_process_group() -> None:
    """Shut a DDP run's process group down before the interpreter exits.

    Lightning leaves it open; PyTorch asks callers to destroy it, and without that a gloo run can end
    with ``terminate called without an active exception`` (SIGABRT, exit status 134) after training
    finished. Only after a successful run: after an exception, other ranks may still be inside a
    collective and destroying the group would hang.
    """
    import torch.distributed as dist  # already loaded: lightning imports torch

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
