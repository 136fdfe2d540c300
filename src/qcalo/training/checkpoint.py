"""Checkpoints: everything needed to resume a run bit for bit, as plain tensors and containers.

A checkpoint is a dict saved with :func:`torch.save` through :func:`qcalo.utils.atomic_path`
(a crash never leaves a partial file) and read back with ``torch.load(weights_only=True)``
only, so loading a checkpoint never executes pickled code. Keys written by the trainer:

``format`` (int), ``epoch`` (epochs completed), ``step`` (optimiser steps), ``model``,
``optimiser``, ``scheduler`` (state dicts), ``rng`` (:func:`capture_rng_state`),
``best_val_nll`` (float or None), ``best_epoch`` (int), ``epochs_without_improvement``,
``history`` (list of per-epoch metric dicts), ``config`` (RunConfig dict), ``stats``
(PreprocessingStats dict), ``training_time_s`` (float), ``parameter_counts``.

On disk the dict is serialised to bytes and stored in an envelope
``{"qcalo_envelope": 1, "sha256": hex digest, "payload": uint8 tensor}``: a checkpoint whose
bytes were altered is refused ("checksum mismatch") instead of generating different showers
without a word. Checkpoints written before the envelope existed (a bare dict) still load, with
a :class:`qcalo.errors.QcaloWarning` that they cannot be checked (the CLI prints it once, as one
line, and only when the command succeeds).

Problems are :class:`qcalo.errors.CheckpointError` (a :class:`DataError`) with one line:
:func:`load_checkpoint` checks the file, the checksum, the format, the keys the caller
``require``\\ s and the types of the known keys; a missing key looked up later raises a
CheckpointError rather than a KeyError; :func:`load_state` applies a state dict to a module,
optimiser or scheduler and turns shape/type mismatches into a CheckpointError.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcalo.errors import CheckpointError, DataError, QcaloWarning
from qcalo.utils.atomic import atomic_path
from qcalo.utils.paths import check_input_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "validate_checkpoint",
    "load_state",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = 1
ENVELOPE_KEY = "qcalo_envelope"
ENVELOPE_VERSION = 1

_RETRAIN = "retrain or restore it from a backup"


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
    """Inverse of :func:`capture_rng_state`; :class:`CheckpointError` if ``state`` is malformed."""
    try:
        py_version, py_internal, py_gauss = state["python"]
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
        py_state = (py_version, tuple(py_internal), py_gauss)
        np_state = (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(state["torch"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint random-generator state is malformed ({_short(exc)}); {_RETRAIN}"
        ) from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoint(dict):
    """A loaded checkpoint: a dict whose missing keys raise :class:`CheckpointError`, not KeyError."""

    path: str = "checkpoint"

    def __missing__(self, key: Any) -> Any:
        raise CheckpointError(
            f"{self.path}: checkpoint has no {key!r} entry (written by another qcalo version, or "
            f"damaged); {_RETRAIN}"
        )


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically, with a SHA-256 of its bytes."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    raw = buffer.getbuffer()
    envelope = {
        ENVELOPE_KEY: ENVELOPE_VERSION,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "payload": torch.frombuffer(bytearray(raw), dtype=torch.uint8),
    }
    # Serialised in memory and written by Python: torch.save onto a file loses the errno of a
    # failed write (a full disk surfaces as "RuntimeError: ... unexpected pos"), while a Python
    # write raises OSError(ENOSPC), which atomic_path turns into one line.
    data = io.BytesIO()
    torch.save(envelope, data)
    del envelope, raw, buffer  # only the bytes to write stay in memory
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data.getbuffer())
    return path


def _torch_load(source: Any, path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(
            f"{path}: cannot be read as a qcalo checkpoint ({_short(exc)}); {_RETRAIN}"
        ) from None


def _open_envelope(path: Path, envelope: dict, map_location: str | torch.device) -> Any:
    digest, payload = envelope.get("sha256"), envelope.get("payload")
    if (
        envelope.get(ENVELOPE_KEY) != ENVELOPE_VERSION
        or not isinstance(digest, str)
        or not isinstance(payload, torch.Tensor)
        or payload.dtype != torch.uint8
        or payload.ndim != 1
    ):
        raise CheckpointError(
            f"{path}: unknown checkpoint envelope (version {envelope.get(ENVELOPE_KEY)!r}); "
            f"expected version {ENVELOPE_VERSION} written by `qcalo train`; {_RETRAIN}"
        )
    raw = payload.cpu().numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != digest:
        raise CheckpointError(f"{path}: checkpoint is corrupted (checksum mismatch); {_RETRAIN}")
    return _torch_load(io.BytesIO(raw), path, map_location)


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    required: Iterable[str] = (),
) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and verify its checksum.

    ``required``: keys the caller needs (checked with :func:`validate_checkpoint`). Raises
    :class:`CheckpointError` (one line) if the file is missing, unreadable, corrupted, of another
    format or malformed. A checkpoint without checksum (written before qcalo stored one) loads
    with a :class:`~qcalo.errors.QcaloWarning` (issued only once it has passed every check).
    """

    path = Path(path)
    if not os.path.lexists(path):
        raise CheckpointError(
            f"{path}: checkpoint not found; expected a file written by `qcalo train`"
        )
    try:  # a directory, FIFO (reading it would hang), device or symlink loop
        check_input_file(path, "checkpoint file written by `qcalo train`")
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    loaded = _torch_load(path, path, map_location)
    checked = isinstance(loaded, dict) and ENVELOPE_KEY in loaded
    if checked:
        loaded = _open_envelope(path, loaded, map_location)
    if not isinstance(loaded, dict) or loaded.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a qcalo checkpoint of format {CHECKPOINT_FORMAT}; {_RETRAIN}"
        )
    checkpoint = Checkpoint(loaded)
    checkpoint.path = str(path)
    validate_checkpoint(checkpoint, required, path=path)
    if not checked:
        # Only for a checkpoint that is otherwise accepted (a refused one gets its error alone),
        # and as a QcaloWarning: the CLI says it once, on one line, without Python's source line.
        warnings.warn(
            f"{path}: checkpoint has no checksum (written by an older qcalo), so corruption cannot "
            "be detected; resuming or retraining the run rewrites it with one",
            QcaloWarning,
            stacklevel=2,
        )
    return checkpoint


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _is_optimiser_state(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("state"), Mapping)
        and isinstance(value.get("param_groups"), list)
        and all(isinstance(g, Mapping) for g in value["param_groups"])
    )


def _is_rng(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("python"), (list, tuple))
        and isinstance(value.get("numpy"), (list, tuple))
        and isinstance(value.get("torch"), torch.Tensor)
    )


# What the known keys must hold when present; unknown keys (new ones) are not checked here.
_KNOWN: dict[str, tuple[Any, str]] = {
    "model": (_is_state_dict, "a state dict of named tensors"),
    "optimiser": (_is_optimiser_state, "an optimiser state dict (state, param_groups)"),
    "scheduler": (lambda v: isinstance(v, Mapping), "a scheduler state dict"),
    "config": (lambda v: isinstance(v, Mapping), "a run config mapping"),
    "stats": (lambda v: isinstance(v, Mapping), "a preprocessing-statistics mapping"),
    "rng": (_is_rng, "random-generator states (python, numpy, torch)"),
    "epoch": (_is_int, "an integer ≥ 0"),
    "step": (_is_int, "an integer ≥ 0"),
    "best_epoch": (_is_int, "an integer ≥ 0"),
    "epochs_without_improvement": (_is_int, "an integer ≥ 0"),
    "best_val_nll": (
        lambda v: v is None or (_is_number(v) and math.isfinite(v)),
        "a number or null",
    ),
    "training_time_s": (lambda v: _is_number(v) and v >= 0, "a number ≥ 0"),
    "history": (
        lambda v: isinstance(v, list) and all(isinstance(r, Mapping) for r in v),
        "a list of per-epoch rows",
    ),
    "parameter_counts": (lambda v: isinstance(v, Mapping), "a mapping of parameter counts"),
    "geometry": (lambda v: isinstance(v, str), "a geometry name"),
    "kind": (lambda v: isinstance(v, str), "a model-kind name"),
}


def validate_checkpoint(
    checkpoint: Mapping[str, Any],
    required: Iterable[str] = (),
    *,
    path: str | os.PathLike[str] | None = None,
) -> None:
    """:class:`CheckpointError` if a ``required`` key is missing or a known key has the wrong type."""
    where = str(path if path is not None else getattr(checkpoint, "path", "checkpoint"))
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{where}: checkpoint lacks {', '.join(map(repr, missing))} (written by another qcalo "
            f"version, or damaged); {_RETRAIN}"
        )
    for key, (ok, expected) in _KNOWN.items():
        if key in checkpoint and not ok(checkpoint[key]):
            got = type(checkpoint[key]).__name__
            raise CheckpointError(
                f"{where}: checkpoint entry {key!r} is a malformed {got}; expected {expected}; {_RETRAIN}"
            )


def load_state(
    target: Any, state: Any, what: str, path: str | os.PathLike[str] | None = None
) -> None:
    """``target.load_state_dict(state)`` (a module, optimiser or scheduler), with one-line errors.

    Missing or unexpected parameters, wrong shapes and wrong types become a
    :class:`CheckpointError` naming ``what`` (e.g. ``"model"``) and ``path``.
    """
    where = str(path) if path is not None else "checkpoint"
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{where}: checkpoint entry {what!r} is a {type(state).__name__}; expected a state dict; {_RETRAIN}"
        )
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        text = " ".join(str(exc).split())
        if isinstance(exc, RuntimeError) and "size mismatch" in text:
            detail = "tensor shapes differ from the model the config builds"
        elif "Missing key" in text or "Unexpected key" in text:
            detail = "its parameter names differ from the model the config builds"
        else:
            detail = _short(exc)
        raise CheckpointError(
            f"{where}: checkpoint entry {what!r} does not fit ({detail}); {_RETRAIN}"
        ) from None
