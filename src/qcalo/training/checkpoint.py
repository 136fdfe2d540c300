"""Checkpoints: everything needed to resume a run bit for bit, as plain tensors and containers.

A checkpoint is a dict saved with :func:`torch.save` through :func:`qcalo.utils.atomic_path`
(a crash never leaves a partial file) and read back with ``torch.load(weights_only=True)``
only, so loading a checkpoint never executes pickled code. Keys:

``format`` (int), ``epoch`` (epochs completed), ``step`` (optimiser steps), ``model``,
``optimiser``, ``scheduler`` (state dicts), ``rng`` (:func:`capture_rng_state`),
``best_val_nll`` (float or None), ``best_epoch`` (int), ``epochs_without_improvement``,
``history`` (list of per-epoch metric dicts), ``config`` (RunConfig dict), ``stats``
(PreprocessingStats dict), ``training_time_s`` (float), ``parameter_counts``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcalo.errors import DataError
from qcalo.utils.atomic import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = 1


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's legacy and torch's (CPU, CUDA) global generators.

    Only tensors, lists, ints, floats and strings, so that ``weights_only`` loading accepts it.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``; :class:`DataError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; expected a file written by `qcalo train`")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise DataError(
            f"{path}: cannot be read as a qcalo checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a qcalo checkpoint of format {CHECKPOINT_FORMAT}")
    return checkpoint
