"""Training data: a seeded train/validation split and reproducible shuffled minibatches.

The training data are one or more CaloChallenge files of the same geometry, read as one data
set: the global event index runs over the events of the first file, then the second, and so
on, and the seeded train/validation split (:func:`split_indices`) is drawn over that global
index, so validation events come from every file. One file gives exactly the split and the
batches it always did.

Small data sets (float32 size of all files together up to ``max_in_memory_mb``) are read into
memory once. Larger ones stream from HDF5: each epoch visits contiguous chunks of at most
``chunk_events`` events (a chunk never spans two files) in a shuffled order, reads
``shuffle_window`` chunks at a time and shuffles their events together, so memory stays bounded
by about ``shuffle_window × chunk_events`` events whatever the files' sizes.

The shuffle of epoch ``e`` is derived from ``(seed, e)`` alone, never from a running generator,
so a run resumed at an epoch boundary sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch

from qcalo.data.geometry import Geometry
from qcalo.data.io import ShowerData, ShowerFileInfo, inspect_file, iter_showers
from qcalo.errors import ConfigError, DataError

__all__ = ["DataPaths", "ShowerDataset", "check_data_files", "data_files", "split_indices"]

Batch = tuple[torch.Tensor, torch.Tensor]

#: One training file, or several read as one data set (in this order).
DataPaths: TypeAlias = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def data_files(paths: DataPaths) -> list[Path]:
    """The training files as a list of paths, in order: one path or a sequence of paths.

    Raises :class:`ConfigError` for an empty sequence.
    """
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    files = [Path(p) for p in paths]
    if not files:
        raise ConfigError(
            "no training data: an empty list of files; pass --data FILE.h5 [FILE.h5 ...] "
            "(or set data.path in the config)"
        )
    return files


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_data_files(paths: DataPaths, geometry: Geometry) -> list[ShowerFileInfo]:
    """Check the training files' structure, without reading their data; one info per file.

    Every file must be a CaloChallenge file whose showers have ``geometry.n_voxels`` voxels;
    several files must all have the same voxel count and no file may be listed twice (its
    events would be trained on twice and could leak into validation). Raises
    :class:`DataError` naming the file at fault and what was expected.
    """
    files = data_files(paths)
    for j, later in enumerate(files):
        for i, earlier in enumerate(files[:j]):
            if _same_file(earlier, later):
                raise DataError(
                    f"{later}: listed twice in the training data (files {i + 1} and {j + 1}, "
                    f"{earlier} and {later}, are the same file); give each training file once"
                )
    if len(files) == 1:
        return [inspect_file(files[0], geometry)]
    infos = [inspect_file(path) for path in files]
    first = infos[0]
    for info in infos[1:]:
        if info.n_voxels != first.n_voxels:
            raise DataError(
                f"{info.path}: showers have {info.n_voxels} voxels per event but {first.path} has "
                f"{first.n_voxels}; all training files must share the geometry "
                f"({geometry.name!r}: {geometry.n_voxels} voxels)"
            )
    if first.n_voxels != geometry.n_voxels:
        inspect_file(first.path, geometry)  # raises the file-versus-geometry message
    return infos


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
    """Showers of one or more CaloChallenge files, split into training and validation events.

    ``path`` is one file or a sequence of files of ``geometry`` (see :func:`check_data_files`);
    their events are concatenated virtually in the order given: global event ``i`` is event
    ``i - file_offsets[k]`` of file ``k``. ``train_indices`` and ``val_indices`` are sorted
    global indices.

    Batches are ``(incident_energies (B,) MeV, showers (B, V) MeV)`` float32 CPU tensors.
    """

    def __init__(
        self,
        path: DataPaths,
        geometry: Geometry,
        *,
        validation_fraction: float,
        seed: int,
        max_in_memory_mb: float = 2048.0,
        chunk_events: int = 4096,
        shuffle_window: int = 8,
    ) -> None:
        self.paths = data_files(path)
        self.geometry = geometry
        self.seed = int(seed)
        infos = check_data_files(self.paths, geometry)
        #: events per file, in order
        self.file_events = [info.n_events for info in infos]
        #: global index of each file's first event, and the total as the last entry, shape (F + 1,)
        self.file_offsets = np.concatenate([[0], np.cumsum(self.file_events)]).astype(np.int64)
        self.n_events = int(self.file_offsets[-1])
        if self.n_events < 2:
            where = (
                str(self.paths[0])
                if len(self.paths) == 1
                else f"{', '.join(map(str, self.paths))} (together)"
            )
            raise ConfigError(
                f"{where}: holds {self.n_events} events; training needs at least 2 (1 train, 1 validation)"
            )
        self.chunk_events = int(chunk_events)
        self.shuffle_window = int(shuffle_window)
        # Streaming reads contiguous chunks of at most chunk_events events, each inside one file
        # (global first index and stop); with one file these are the chunks read ever since.
        self._chunk_starts = np.concatenate(
            [
                offset + np.arange(0, n, self.chunk_events)
                for offset, n in zip(self.file_offsets[:-1], self.file_events)
            ]
        ).astype(np.int64)
        file_stops = self.file_offsets[1:][
            np.searchsorted(self.file_offsets, self._chunk_starts, side="right") - 1
        ]
        self._chunk_stops = np.minimum(self._chunk_starts + self.chunk_events, file_stops)
        self.train_indices, self.val_indices = split_indices(
            self.n_events, validation_fraction, self.seed
        )
        size_mb = self.n_events * (geometry.n_voxels + 1) * 4 / 2**20
        self.in_memory = size_mb <= max_in_memory_mb
        self._energies: torch.Tensor | None = None
        self._showers: torch.Tensor | None = None
        if self.in_memory:
            self._energies, self._showers = self._read_all()

    @property
    def n_train(self) -> int:
        return len(self.train_indices)

    @property
    def n_val(self) -> int:
        return len(self.val_indices)

    # ----- reading ------------------------------------------------------------------------
    def _read_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every event of every file as float32 tensors (N,) MeV and (N, V) MeV, global order.

        Chunks are copied into arrays allocated once, so the peak is the result plus one chunk.
        """
        energies = np.empty(self.n_events, dtype=np.float32)
        showers = np.empty((self.n_events, self.geometry.n_voxels), dtype=np.float32)
        for k, path in enumerate(self.paths):
            lo, hi = int(self.file_offsets[k]), int(self.file_offsets[k + 1])
            filled = lo
            for chunk in iter_showers(path, geometry=self.geometry, dtype=np.float32):
                if filled + len(chunk) > hi:
                    filled += len(chunk)
                    break
                energies[filled : filled + len(chunk)] = chunk.incident_energies
                showers[filled : filled + len(chunk)] = chunk.showers
                filled += len(chunk)
            if filled != hi:  # only if the file changed since it was checked
                raise DataError(
                    f"{path}: read {filled - lo} events, expected {hi - lo}; was the file modified "
                    "while reading?"
                )
        return torch.from_numpy(energies), torch.from_numpy(showers)

    def _read_chunk(self, lo: int, hi: int) -> ShowerData:
        """Global events ``lo..hi-1`` (all inside one file) as float32 arrays, read from HDF5."""
        k = int(np.searchsorted(self.file_offsets, lo, side="right")) - 1
        base = int(self.file_offsets[k])
        assert hi <= self.file_offsets[k + 1], "a chunk must not span two files"
        path = self.paths[k]
        data = next(
            iter_showers(
                path,
                hi - lo,
                geometry=self.geometry,
                dtype=np.float32,
                start=lo - base,
                stop=hi - base,
            ),
            None,
        )
        if data is None or len(data) != hi - lo:
            raise DataError(
                f"{path}: events {lo - base}-{hi - base} are missing; was the file modified while reading?"
            )
        return data

    def _chunks(self) -> Iterator[tuple[int, int]]:
        """The streaming chunks ``(lo, hi)`` in global order."""
        yield from zip(self._chunk_starts.tolist(), self._chunk_stops.tolist())

    # ----- whole passes -------------------------------------------------------------------
    def train_chunks(self) -> Iterator[ShowerData]:
        """Training events in global order (file by file), as :class:`ShowerData` chunks.

        For statistics; values are the float32 values the model trains on, widened to float64.
        """
        yield from self._subset_chunks(self.train_indices, np.float64)

    def validation_batches(self, batch_size: int) -> Iterator[Batch]:
        """Validation events in global order (file by file), batched."""
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
        for lo, hi in self._chunks():
            keep = member[lo:hi]
            if not keep.any():
                continue
            # Read as float32 like the training batches, so statistics see the values trained on.
            data = self._read_chunk(lo, hi)
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
        # chunks (of all files) are visited in a random order and ``shuffle_window`` of them at a
        # time are read and shuffled together (memory: about shuffle_window × chunk_events events).
        member = np.zeros(self.n_events, dtype=bool)
        member[self.train_indices] = True
        # The permutation of the chunk starts themselves, as with one file ever since (a
        # permutation of the chunk numbers would draw the same way, but this is what is pinned).
        starts = rng.permutation(self._chunk_starts)
        stops = self._chunk_stops[np.searchsorted(self._chunk_starts, starts)]
        carry_e = torch.zeros(0)
        carry_x = torch.zeros(0, self.geometry.n_voxels)
        for w in range(0, len(starts), self.shuffle_window):
            window_e, window_x = [carry_e], [carry_x]
            for lo, hi in zip(
                starts[w : w + self.shuffle_window].tolist(),
                stops[w : w + self.shuffle_window].tolist(),
            ):
                keep = np.flatnonzero(member[lo:hi])
                if len(keep) == 0:
                    continue
                data = self._read_chunk(lo, hi)
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
