"""One seed for every random number generator qcalo touches, and the range seeds must lie in."""

from __future__ import annotations

import argparse
import random

import numpy as np

from qcalo.errors import ConfigError

# torch.manual_seed takes up to 2**64 - 1, NumPy any non-negative integer, HDF5 attributes and
# JSON readers int64; qcalo adds offsets of up to ~10**6 to derive further seeds. Seeds below
# 2**63 satisfy all of them with room to spare.
MAX_SEED = 2**63 - 1


def check_seed(seed: object, what: str = "--seed") -> int:
    """``seed`` as an int if it is an integer in [0, 2**63 - 1]; :class:`ConfigError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"{what} {seed!r}: expected an integer between 0 and {MAX_SEED}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(
            f"{what} {seed}: expected an integer between 0 and {MAX_SEED} (2**63 - 1)"
        )
    return int(seed)


def seed_argument(text: str) -> int:
    """argparse ``type=`` for seeds: an integer in [0, 2**63 - 1]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer; expected a seed between 0 and {MAX_SEED}"
        ) from None
    try:
        return check_seed(value, "seed")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
