"""One seed for every random number generator qcalo touches."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy global state and torch (CPU and CUDA).

    Returns a fresh :class:`numpy.random.Generator` seeded with ``seed`` for code that takes
    an explicit generator (preferred over the global state).
    """
    import torch  # here, not at module level: data-only commands should not pay for torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
