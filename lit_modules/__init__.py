"""LightningModules: one training method per file."""

from .classifier import TextClassifier
from .schedules import LinearWarmupDecay

__all__ = ["TextClassifier", "LinearWarmupDecay"]
