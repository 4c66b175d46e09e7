"""Side effects of training, as Lightning callbacks."""

from .adapter_checkpoint import AdapterCheckpoint
from .finite_guard import StopOnNonFiniteLoss
from .hf_export import HFModelExport
from .prediction_writer import PredictionWriter
from .throughput import TrainThroughput

__all__ = ["AdapterCheckpoint", "StopOnNonFiniteLoss", "HFModelExport", "PredictionWriter", "TrainThroughput"]
