"""Training data: a seeded train/validation split and reproducible shuffled minibatches.

Small files (float32 size up to ``max_in_memory_mb``) are read into memory once. Larger files
stream from HDF5: each epoch visits contiguous chunks of ``chunk_events`` events in a shuffled
order, reads ``shuffle_window`` chunks at a time and shuffles their events together, so memory
stays bounded by about ``shuffle_window × chunk_events`` events whatever the file size.

The shuffle of epoch ``e`` is derived from ``(seed, e)`` alone, never from a running generator,
so a run resumed at an epoch boundary sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from qcalo.data.geometry import Geometry
from qcalo.data.io import ShowerData, inspect_file, iter_showers, read_showers
from qcalo.errors import ConfigError

__all__ = ["ShowerDataset", "split_indices"]

Batch = tuple[torch.Tensor, torch.Tensor]


def split_indices(
    n_events: int, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split event indices 0..n_events-1 into sorted (train, validation) index arrays.

    The split is a permutation drawn from ``numpy.random.default_rng(seed)``; the first
    ``round(validation_fraction * n_events)`` permuted indices (at least 1) are validation.
    """
    n_val = max(1, int(round(validation_fraction * n_events)))
    if n_events - n_val < 1:
        raise ConfigError(
            f"validation_fraction {validation_fraction} leaves no training events out of {n_events}; "
            "expected a smaller fraction or more events"
        )
    perm = np.random.default_rng(seed).permutation(n_events)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class ShowerDataset:
    """Showers of one CaloChallenge file split into training and validation events.

    Batches are ``(incident_energies (B,) MeV, showers (B, V) MeV)`` float32 CPU tensors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        geometry: Geometry,
        *,
        validation_fraction: float,
        seed: int,
        max_in_memory_mb: float = 2048.0,
        chunk_events: int = 4096,
        shuffle_window: int = 8,
    ) -> None:
        self.path = Path(path)
        self.geometry = geometry
        self.seed = int(seed)
        info = inspect_file(self.path, geometry)
        self.n_events = info.n_events
        if self.n_events < 2:
            raise ConfigError(
                f"{self.path}: holds {self.n_events} events; training needs at least 2 (1 train, 1 validation)"
            )
        self.chunk_events = int(chunk_events)
        self.shuffle_window = int(shuffle_window)
        self.train_indices, self.val_indices = split_indices(
            self.n_events, validation_fraction, self.seed
        )
        size_mb = self.n_events * (info.n_voxels + 1) * 4 / 2**20
        self.in_memory = size_mb <= max_in_memory_mb
        self._energies: torch.Tensor | None = None
        self._showers: torch.Tensor | None = None
        if self.in_memory:
            data = read_showers(self.path, geometry=geometry, dtype=np.float32)
            self._energies = torch.from_numpy(data.incident_energies)
            self._showers = torch.from_numpy(data.showers)

    @property
    def n_train(self) -> int:
        return len(self.train_indices)

    @property
    def n_val(self) -> int:
        return len(self.val_indices)

    # ----- whole passes -------------------------------------------------------------------
    def train_chunks(self) -> Iterator[ShowerData]:
        """Training events in file order, as :class:`ShowerData` chunks (for statistics).

        Values are the float32 values the model trains on, widened to float64.
        """
        yield from self._subset_chunks(self.train_indices, np.float64)

    def validation_batches(self, batch_size: int) -> Iterator[Batch]:
        """Validation events in file order, batched."""
        for chunk in self._subset_chunks(
            self.val_indices, np.float32, chunk=batch_size if self.in_memory else None
        ):
            energies, showers = (
                torch.from_numpy(chunk.incident_energies),
                torch.from_numpy(chunk.showers),
            )
            for lo in range(0, len(energies), batch_size):
                yield energies[lo : lo + batch_size], showers[lo : lo + batch_size]

    def _subset_chunks(
        self, indices: np.ndarray, dtype: type, chunk: int | None = None
    ) -> Iterator[ShowerData]:
        if self.in_memory:
            assert self._energies is not None and self._showers is not None
            step = chunk or self.chunk_events
            for lo in range(0, len(indices), step):
                idx = torch.from_numpy(indices[lo : lo + step])
                yield ShowerData(
                    self._energies[idx].numpy().astype(dtype, copy=False),
                    self._showers[idx].numpy().astype(dtype, copy=False),
                )
            return
        member = np.zeros(self.n_events, dtype=bool)
        member[indices] = True
        for lo in range(0, self.n_events, self.chunk_events):
            hi = min(lo + self.chunk_events, self.n_events)
            keep = member[lo:hi]
            if not keep.any():
                continue
            # Read as float32 like the training batches, so statistics see the values trained on.
            data = next(
                iter_showers(
                    self.path, hi - lo, geometry=self.geometry, dtype=np.float32, start=lo, stop=hi
                )
            )
            yield ShowerData(
                data.incident_energies[keep].astype(dtype), data.showers[keep].astype(dtype)
            )

    # ----- shuffled training batches ------------------------------------------------------
    def epoch_rng(self, epoch: int) -> np.random.Generator:
        """The generator that shuffles epoch ``epoch`` (0-based), a function of (seed, epoch) only."""
        return np.random.default_rng([self.seed, 0x5EED, epoch])

    def train_batches(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        """Shuffled training batches of epoch ``epoch``; every training event appears once.

        All batches have ``batch_size`` events except possibly the last.
        """
        rng = self.epoch_rng(epoch)
        if self.in_memory:
            assert self._energies is not None and self._showers is not None
            order = torch.from_numpy(rng.permutation(self.train_indices))
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                yield self._energies[idx], self._showers[idx]
            return
        yield from self._streamed_batches(rng, batch_size)

    def _streamed_batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        # Files are often sorted by incident energy, so shuffling within one chunk is not enough:
        # chunks are visited in a random order and ``shuffle_window`` of them at a time are read
        # and shuffled together (memory: about shuffle_window × chunk_events events).
        member = np.zeros(self.n_events, dtype=bool)
        member[self.train_indices] = True
        starts = rng.permutation(np.arange(0, self.n_events, self.chunk_events))
        carry_e = torch.zeros(0)
        carry_x = torch.zeros(0, self.geometry.n_voxels)
        for w in range(0, len(starts), self.shuffle_window):
            window_e, window_x = [carry_e], [carry_x]
            for lo in starts[w : w + self.shuffle_window]:
                lo = int(lo)
                hi = min(lo + self.chunk_events, self.n_events)
                keep = np.flatnonzero(member[lo:hi])
                if len(keep) == 0:
                    continue
                data = next(
                    iter_showers(
                        self.path,
                        hi - lo,
                        geometry=self.geometry,
                        dtype=np.float32,
                        start=lo,
                        stop=hi,
                    )
                )
                window_e.append(torch.from_numpy(data.incident_energies[keep]))
                window_x.append(torch.from_numpy(data.showers[keep]))
            energies, showers = torch.cat(window_e), torch.cat(window_x)
            order = torch.from_numpy(rng.permutation(len(energies)))
            energies, showers = energies[order], showers[order]
            n_full = (len(energies) // batch_size) * batch_size
            for b in range(0, n_full, batch_size):
                yield energies[b : b + batch_size], showers[b : b + batch_size]
            carry_e, carry_x = energies[n_full:], showers[n_full:]
        if len(carry_e):
            yield carry_e, carry_x

    def n_train_batches(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)
