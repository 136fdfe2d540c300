"""Hold out a seeded fraction of a CaloChallenge file as a reference.

One split for every tool that needs one: ``benchmarks/quality_g4.py`` (and the Geant4
benchmarks that read its files) and studies with ``data: {holdout: ...}`` both call
:func:`split_showers`, so the same source, fraction and seed give the same events on either
side. The rule::

    perm = np.random.default_rng(seed).permutation(n_events)
    n_heldout = int(round(fraction * n_events))
    heldout = sorted(perm[:n_heldout]);  train = sorted(perm[n_heldout:])

Both outputs keep the events in the source's order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcalo.data.geometry import Geometry
from qcalo.data.io import DEFAULT_CHUNK, ShowerWriter, inspect_file, iter_showers
from qcalo.errors import DataError

__all__ = ["ShowerSplit", "holdout_indices", "split_showers"]


@dataclass(frozen=True)
class ShowerSplit:
    """What :func:`split_showers` wrote: the two files and their event counts."""

    train: Path
    heldout: Path
    n_train: int
    n_heldout: int


def _check_fraction(fraction: float) -> float:
    value = float(fraction)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"held-out fraction must lie strictly between 0 and 1, got {fraction!r}")
    return value


def holdout_indices(n_events: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The event indices of a seeded split of ``n_events`` events.

    Returns ``(train, heldout)``: two sorted int64 arrays, shapes (n_events - n_heldout,) and
    (n_heldout,) with ``n_heldout = int(round(fraction * n_events))``, disjoint, together
    ``0 … n_events - 1``. ``heldout`` is the first ``n_heldout`` entries of
    ``np.random.default_rng(seed).permutation(n_events)``, ``train`` the rest.
    ``fraction`` must lie strictly between 0 and 1 (ValueError otherwise).
    """
    fraction = _check_fraction(fraction)
    if n_events < 0:
        raise ValueError(f"n_events must be ≥ 0, got {n_events}")
    perm = np.random.default_rng(seed).permutation(n_events)
    n_heldout = int(round(fraction * n_events))
    heldout_idx, train_idx = np.sort(perm[:n_heldout]), np.sort(perm[n_heldout:])
    return train_idx.astype(np.int64), heldout_idx.astype(np.int64)


def split_showers(
    source: str | os.PathLike[str],
    fraction: float,
    seed: int,
    train_out: str | os.PathLike[str],
    heldout_out: str | os.PathLike[str],
    *,
    geometry: str | Geometry | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> ShowerSplit:
    """Write the seeded split of ``source`` (see :func:`holdout_indices`) to two new files.

    ``source``: a CaloChallenge file, ``incident_energies`` (N, 1) and ``showers``
    (N, n_voxels), MeV. ``train_out`` receives the N - n_heldout training events as float32,
    ``heldout_out`` the n_heldout held-out events as float64 (the CaloChallenge evaluation's
    dtype), each in the source's event order, energies unchanged in MeV (up to the float32
    cast). The source is read in chunks of ``chunk_size`` events (values validated as every
    reader does; ``geometry``, if given, checks its voxel count), so memory does not grow with
    the file. Each output appears atomically under its name only when complete; an existing
    file there is replaced.

    Raises ValueError for a fraction outside (0, 1) and :class:`DataError` for an unreadable
    source or a split that leaves one side empty.
    """
    fraction = _check_fraction(fraction)
    source = Path(source)
    info = inspect_file(source, geometry)
    train_idx, heldout_idx = holdout_indices(info.n_events, fraction, seed)
    if len(train_idx) == 0 or len(heldout_idx) == 0:
        raise DataError(
            f"{source}: {info.n_events} events split {len(train_idx)} / {len(heldout_idx)} "
            f"(held-out fraction {fraction:g}); both sides need at least one event"
        )
    heldout = np.zeros(info.n_events, dtype=bool)
    heldout[heldout_idx] = True
    with (
        ShowerWriter(
            train_out, info.n_voxels, dtype=np.float32, expected_events=len(train_idx)
        ) as train_writer,
        ShowerWriter(
            heldout_out, info.n_voxels, dtype=np.float64, expected_events=len(heldout_idx)
        ) as heldout_writer,
    ):
        start = 0
        for chunk in iter_showers(source, chunk_size, geometry=geometry, dtype=np.float64):
            mask = heldout[start : start + len(chunk)]
            start += len(chunk)
            if (~mask).any():
                train_writer.append(chunk.incident_energies[~mask], chunk.showers[~mask])
            if mask.any():
                heldout_writer.append(chunk.incident_energies[mask], chunk.showers[mask])
        if start != info.n_events or train_writer.n_events != len(train_idx):
            raise DataError(
                f"{source}: read {start} events, expected {info.n_events}; was the file modified "
                "while reading?"
            )
    return ShowerSplit(Path(train_out), Path(heldout_out), len(train_idx), len(heldout_idx))
