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


def main(args: ArgsType = None) -> TextCLI:
    """Run the CLI; ``args`` (a list or dict) replaces ``sys.argv`` for tests and scripts."""
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
    )


if __name__ == "__main__":
    main()
