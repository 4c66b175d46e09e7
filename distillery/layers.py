"""Shrink a pretrained encoder by keeping some of its transformer layers (DistilBERT-style init)."""

from __future__ import annotations

from torch import nn

__all__ = ["encoder_layers", "keep_layers"]


def encoder_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """Return (parent module, attribute name) of the ModuleList holding the transformer layers."""
    base = getattr(model, "base_model", model)
    for parent_name, attr in (("encoder", "layer"), ("transformer", "layer")):
        parent = getattr(base, parent_name, None)
        if parent is not None and isinstance(getattr(parent, attr, None), nn.ModuleList):
            return parent, attr
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def keep_layers(model: nn.Module, indices: list[int]) -> nn.Module:
    """Keep only ``indices`` of the encoder's layers, in that order, and update the config.

    The kept layers are the same module objects, so their weights are exactly the pretrained ones.
    """
    parent, attr = encoder_layers(model)
    layers = getattr(parent, attr)
    bad = [i for i in indices if not -len(layers) <= i < len(layers)]
    if not indices or bad:
        raise ValueError(f"keep_layers {indices}: the encoder has layers 0..{len(layers) - 1}")
    setattr(parent, attr, nn.ModuleList([layers[i] for i in indices]))
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, len(indices))
    return model
