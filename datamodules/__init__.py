"""LightningDataModules: one dataset per file, sharing tokenization, caching and batching."""

from .base import TextClassificationDataModule
from .io import DataError, Split
from .sst2 import SST2DataModule
from .steam import SteamReviewsDataModule

__all__ = ["TextClassificationDataModule", "SST2DataModule", "SteamReviewsDataModule", "DataError", "Split"]
