"""Global RNG state in a checkpoint, so that a resumed run draws the same dropout masks and shuffles."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["RNG_STATES", "capture_rng_states", "restore_rng_states"]

# The checkpoint key that holds the states.
RNG_STATES = "rng_states"


def capture_rng_states() -> dict:
    """Return the Python, NumPy, torch CPU and CUDA generator states.

    Plain types and tensors only, so that ``torch.load(weights_only=True)`` reads them back.
    Lightning's Trainer does not save these states itself (Fabric's ``_collect_rng_states`` is
    private), and without them a resumed run's dropout masks differ from an uninterrupted one's.
    """
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict) -> None:
    """Set every generator captured by :func:`capture_rng_states` back to its saved state."""
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = states["numpy"]
    np.random.set_state((numpy[0], np.array(numpy[1], dtype=np.uint32), *numpy[2:]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
