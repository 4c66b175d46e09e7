"""Which modules of a ``transformers`` classifier LoRA adapts, and which it trains in full."""

from __future__ import annotations

from torch import nn

__all__ = ["ATTENTION_TARGETS", "attention_targets", "head_modules"]

# The attention projections that ``target_modules: auto`` adapts, by ``config.model_type``.
# BERT and MPNet get Q, K and V; RoBERTa and DistilBERT the Q/V pair of the LoRA paper
# (Hu et al., 2021, section 7.1), as peft's own defaults for them do.
ATTENTION_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value"],
    "mpnet": ["q", "k", "v"],
    "roberta": ["query", "value"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "distilbert": ["q_lin", "v_lin"],
}


def attention_targets(model: nn.Module) -> list[str]:
    """Return the module names that ``target_modules: auto`` adapts in ``model``.

    Raises:
        ValueError: naming the model type, the known ones, and the init argument to set instead.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ATTENTION_TARGETS:
        raise ValueError(
            f"target_modules: auto does not know model_type {model_type!r} (known: {', '.join(ATTENTION_TARGETS)}); "
            "set model.init_args.target_modules to a list of module names"
        )
    return list(ATTENTION_TARGETS[model_type])


def head_modules(model: nn.Module) -> list[str]:
    """Names of the top-level modules outside the pretrained encoder that hold weights.

    These are the modules ``from_pretrained`` initialises at random for a new task: ``classifier``
    everywhere, plus ``pooler`` for DeBERTa-v2 and ``pre_classifier`` for DistilBERT. They must
    train in full, since a frozen random layer would be a fixed random projection.
    """
    encoder = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != encoder and any(True for _ in child.parameters())
    ]
