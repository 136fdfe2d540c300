"""Hold out a seeded fraction of a CaloChallenge file as a reference.

One split for every tool that needs one: ``benchmarks/quality_g4.py`` (and the Geant4
benchmarks that read its files) and studies with ``data: {holdout: ...}`` both call
:func:`split_showers`, so the same source, fraction and seed give the same events on either
side. The rule::

    perm = np.random.default_rng(seed).permutation(n_events)
    n_heldout = int(round(fraction * n_events))
    heldout = sorted(perm[:n_heldout]);  train = sorted(perm[n_heldout:])

Both outputs keep the events in the source's order.

Held-out incident energies (interpolation): with ``heldout_energies`` (MeV), every event at one
of those energies goes to the held-out side, and the rule above splits the remaining events
(``n_events`` is then their count, ``perm`` indexes them), so an empty list gives the plain
split. :func:`drop_energies` removes the same energies from other training files, so that no
training event has them. Energies match within a relative :data:`ENERGY_RTOL` (float32
round-off of the CaloChallenge files' float64 energies).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcalo.data.geometry import Geometry
from qcalo.data.io import DEFAULT_CHUNK, ShowerWriter, inspect_file, iter_showers, read_energies
from qcalo.errors import DataError

__all__ = [
    "ENERGY_RTOL",
    "ShowerSplit",
    "drop_energies",
    "energy_mask",
    "holdout_indices",
    "split_showers",
]

#: Relative tolerance within which an event's incident energy equals a listed energy.
ENERGY_RTOL = 1e-5


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


def energy_mask(incident_energies: np.ndarray, energies: Sequence[float]) -> np.ndarray:
    """(N,) bool: which of the ``incident_energies`` (N,) or (N, 1) MeV equal one of
    ``energies`` (MeV) within a relative :data:`ENERGY_RTOL`."""
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    mask = np.zeros(e.shape, dtype=bool)
    for value in energies:
        mask |= np.abs(e - float(value)) <= ENERGY_RTOL * abs(float(value))
    return mask


def holdout_indices(
    n_events: int,
    fraction: float,
    seed: int,
    *,
    incident_energies: np.ndarray | None = None,
    heldout_energies: Sequence[float] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The event indices of a seeded split of ``n_events`` events.

    Returns ``(train, heldout)``: two sorted int64 arrays, disjoint, together
    ``0 … n_events - 1``. Without ``heldout_energies``, ``heldout`` is the first
    ``n_heldout = int(round(fraction * n_events))`` entries of
    ``np.random.default_rng(seed).permutation(n_events)`` and ``train`` the rest. With them
    (``incident_energies`` (n_events,) MeV needed), every event at a held-out energy is held out
    and the same rule splits the other events among themselves. ``fraction`` must lie strictly
    between 0 and 1 (ValueError otherwise).

    Example (10 events, the last three at 2048 MeV held out as an energy)::

        >>> e = np.array([1024.0] * 7 + [2048.0] * 3)
        >>> train, held = holdout_indices(10, 0.3, 0, incident_energies=e, heldout_energies=[2048])
        >>> len(train), len(held), {7, 8, 9} <= set(held.tolist())
        (5, 5, True)
    """
    fraction = _check_fraction(fraction)
    if n_events < 0:
        raise ValueError(f"n_events must be ≥ 0, got {n_events}")
    if heldout_energies:
        if incident_energies is None or len(incident_energies) != n_events:
            raise ValueError("heldout_energies needs the incident_energies of all n_events events")
        by_energy = energy_mask(incident_energies, heldout_energies)
    else:
        by_energy = np.zeros(n_events, dtype=bool)
    rest = np.flatnonzero(~by_energy)
    perm = np.random.default_rng(seed).permutation(len(rest))
    n_heldout = int(round(fraction * len(rest)))
    heldout_idx = np.sort(np.concatenate([rest[perm[:n_heldout]], np.flatnonzero(by_energy)]))
    train_idx = np.sort(rest[perm[n_heldout:]])
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
    heldout_energies: Sequence[float] = (),
) -> ShowerSplit:
    """Write the seeded split of ``source`` (see :func:`holdout_indices`, with
    ``heldout_energies`` MeV held out whole) to two new files.

    ``source``: a CaloChallenge file, ``incident_energies`` (N, 1) and ``showers``
    (N, n_voxels), MeV. ``train_out`` receives the N - n_heldout training events as float32,
    ``heldout_out`` the n_heldout held-out events as float64 (the CaloChallenge evaluation's
    dtype), each in the source's event order, energies unchanged in MeV (up to the float32
    cast). The source is read in chunks of ``chunk_size`` events (values validated as every
    reader does; ``geometry``, if given, checks its voxel count), so memory does not grow with
    the file. Each output appears atomically under its name only when complete; an existing
    file there is replaced.

    Raises ValueError for a fraction outside (0, 1) and :class:`DataError` for an unreadable
    source, a held-out energy no event of ``source`` has, or a split that leaves one side empty.
    """
    fraction = _check_fraction(fraction)
    source = Path(source)
    info = inspect_file(source, geometry)
    energies = read_energies(source) if heldout_energies else None
    if energies is not None:
        _check_energies_present(source, energies, heldout_energies)
    train_idx, heldout_idx = holdout_indices(
        info.n_events,
        fraction,
        seed,
        incident_energies=energies,
        heldout_energies=heldout_energies,
    )
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


def _check_energies_present(
    source: Path, energies: np.ndarray, heldout_energies: Sequence[float]
) -> None:
    for value in heldout_energies:
        if not energy_mask(energies, [value]).any():
            present = sorted({float(f"{e:.6g}") for e in np.asarray(energies).reshape(-1)})
            shown = ", ".join(f"{e:g}" for e in present[:16]) + (" …" if len(present) > 16 else "")
            raise DataError(
                f"{source}: no event has the held-out incident energy {float(value):g} MeV; "
                f"expected one of the file's energies ({shown} MeV)"
            )


def drop_energies(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    energies: Sequence[float],
    *,
    geometry: str | Geometry | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> int:
    """Write ``source`` without its events at ``energies`` (MeV) to ``out`` (float32, the
    training dtype, events in the source's order, atomically); returns the events written.

    A training file other than the one a reference is held out of loses the held-out energies
    this way, so that no training event has them. :class:`DataError` when nothing is left.
    """
    source = Path(source)
    info = inspect_file(source, geometry)
    keep = ~energy_mask(read_energies(source), energies)
    if not keep.any():
        raise DataError(
            f"{source}: every event is at a held-out incident energy "
            f"({', '.join(f'{float(e):g}' for e in energies)} MeV); nothing is left to train on"
        )
    with ShowerWriter(out, info.n_voxels, dtype=np.float32, expected_events=int(keep.sum())) as w:
        start = 0
        for chunk in iter_showers(source, chunk_size, geometry=geometry, dtype=np.float64):
            mask = keep[start : start + len(chunk)]
            start += len(chunk)
            if mask.any():
                w.append(chunk.incident_energies[mask], chunk.showers[mask])
        written = w.n_events
    return int(written)
