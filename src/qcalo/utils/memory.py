"""One guard for requests too big for this machine, checked before anything is allocated.

Asking NumPy or torch for 10¹³ bytes ends in a ``MemoryError`` traceback, or worse, in the
kernel's OOM killer after minutes of swapping; asking HDF5 to write more than the disk holds
once ended in a segmentation fault. :func:`check_allocation` and :func:`check_disk_space` turn
such requests into one-line :class:`qcalo.errors.ResourceError`\\ s naming what was asked for,
what is available and how to ask for less. :func:`model_memory_bytes` estimates what a model
config needs without building it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from qcalo.errors import ResourceError

__all__ = [
    "available_memory",
    "check_allocation",
    "check_disk_space",
    "format_bytes",
    "model_memory_bytes",
]

# Leave this much of the available memory to everything else.
_HEADROOM = 0.9


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; huge values stay readable ('8.0e+03 PiB')."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.1f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop always returns


def available_memory() -> int:
    """Bytes of memory available to a new allocation without swapping (psutil's estimate)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_allocation(n_bytes: float, what: str, fix: str) -> None:
    """:class:`ResourceError` if ``n_bytes`` will not fit in the available memory.

    ``what`` names the request (``"--events-per-energy 10000000000 × 368 voxels"``), ``fix``
    says how to ask for less (``"lower --events-per-energy"``).
    """
    if not math.isfinite(n_bytes) or n_bytes < 0:
        raise ResourceError(f"{what}: the size cannot be computed; {fix}")
    available = available_memory()
    if n_bytes > _HEADROOM * available:
        raise ResourceError(
            f"{what} needs about {format_bytes(n_bytes)} of memory but only "
            f"{format_bytes(available)} is available; {fix}"
        )


def check_disk_space(path: str | os.PathLike[str], n_bytes: float, what: str, fix: str) -> None:
    """:class:`ResourceError` if the file system that will hold ``path`` has less than ``n_bytes`` free."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell; the write itself reports a full disk cleanly
    if not math.isfinite(n_bytes) or n_bytes > free:
        raise ResourceError(
            f"{path}: {what} needs up to {format_bytes(n_bytes)} on disk but only "
            f"{format_bytes(free)} is free in {folder}; {fix}"
        )


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def _int(value: Any, default: int = 0) -> int:
    return (
        int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def model_memory_bytes(
    model_config: Mapping[str, Any], batch_size: int, *, training: bool
) -> float:
    """A rough upper estimate of the memory a model needs, from its config dict alone.

    Generic over model kinds: every mapping with a ``hidden`` list of widths counts as an MLP
    per block (``n_blocks``; or one width list per block), every ``n_qubits`` /
    ``mixer_qubits`` as a state vector of 2^n complex128 amplitudes per event in the batch. Training counts parameters four times
    (weights, gradients, two Adam moments) and activations twice (forward and backward).
    """
    batch = max(1, int(batch_size))
    factor = 4 if training else 1
    activation_factor = 2 if training else 1
    total = 0.0
    for node in _walk(model_config):
        blocks = max(1, _int(node.get("n_blocks"), 1))
        hidden = node.get("hidden")
        if isinstance(hidden, (list, tuple)) and hidden:
            # one width list for every block, or one per block ([[68], [60], ...])
            per_block = (
                [h for h in hidden if isinstance(h, (list, tuple))]
                if isinstance(hidden[0], (list, tuple))
                else [hidden] * blocks
            )
            for block_hidden in per_block:
                widths = [max(1, _int(w, 1)) for w in block_hidden]
                params = sum(a * b for a, b in zip(widths, widths[1:])) + 2 * sum(widths)
                total += 4.0 * params * factor + 4.0 * batch * sum(widths) * activation_factor
        for key in ("n_qubits", "mixer_qubits"):
            n = _int(node.get(key), 0)
            if n > 0:
                layers = max(1, _int(node.get("n_layers"), 1))
                total += 16.0 * (2.0**n) * batch * activation_factor * (layers if training else 1)
    return total
