"""Shared helpers that are neither modules, datamodules nor callbacks."""
