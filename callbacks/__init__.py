"""Side effects of training, as Lightning callbacks."""

from .hf_export import HFModelExport
from .prediction_writer import PredictionWriter
from .throughput import TrainThroughput

__all__ = ["HFModelExport", "PredictionWriter", "TrainThroughput"]
