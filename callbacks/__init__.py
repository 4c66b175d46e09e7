"""Side effects of training, as Lightning callbacks."""

from .finite_guard import StopOnNonFiniteLoss
from .hf_export import HFModelExport
from .prediction_writer import PredictionWriter
from .throughput import TrainThroughput

__all__ = ["StopOnNonFiniteLoss", "HFModelExport", "PredictionWriter", "TrainThroughput"]
