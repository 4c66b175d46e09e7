"""LightningModules: one training method per file."""

from .classifier import TextClassifier
from .distill import DistillationClassifier
from .lora import LoRAClassifier
from .schedules import LinearWarmupDecay

__all__ = ["TextClassifier", "DistillationClassifier", "LoRAClassifier", "LinearWarmupDecay"]
