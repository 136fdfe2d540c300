"""Read and write CaloChallenge HDF5 shower files.

Format (CaloChallenge 2022): dataset ``incident_energies`` of shape (N, 1) and dataset
``showers`` of shape (N, n_voxels), both in MeV, gzip-compressed. Readers accept float32 and
float64 in either byte order (big-endian files are read into native order); :func:`iter_showers`
streams fixed-size chunks so that files with millions of events never have to fit in memory.
Writers go through :func:`qcalo.utils.atomic_path`: a file appears under its final name only
when complete.

Every problem with a file raises :class:`qcalo.errors.DataError` naming the file, the problem and
what was expected.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from qcalo.data.geometry import Geometry, load_geometry
from qcalo.errors import DataError
from qcalo.utils.atomic import atomic_path, write_failure
from qcalo.utils.memory import check_disk_space
from qcalo.utils.paths import check_input_file

__all__ = [
    "ShowerData",
    "ShowerFileInfo",
    "inspect_file",
    "read_energies",
    "read_showers",
    "iter_showers",
    "write_showers",
    "ShowerWriter",
]

ENERGY_KEY = "incident_energies"
SHOWER_KEY = "showers"
DEFAULT_CHUNK = 10_000
# The float types a CaloChallenge file may hold (float16 loses the precision of low-energy
# voxels; float128 is neither portable nor what the challenge's tools read).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# No calorimeter deposit or incident energy comes near 10^12 MeV (1 PeV); values beyond are
# garbage, and their squares overflow float32 in the feature and model computations.
MAX_ENERGY_MEV = 1e12


@dataclass
class ShowerData:
    """A batch of showers: ``incident_energies`` (N,) MeV and ``showers`` (N, n_voxels) MeV."""

    incident_energies: np.ndarray
    showers: np.ndarray

    def __len__(self) -> int:
        return len(self.incident_energies)


@dataclass(frozen=True)
class ShowerFileInfo:
    """What a file holds, read from its metadata without loading the data."""

    path: Path
    n_events: int
    n_voxels: int
    dtype: np.dtype
    attrs: Mapping[str, Any]


def native_dtype(dtype: np.dtype | type | str) -> np.dtype:
    """``dtype`` in this machine's byte order: byte order is how a writer stored the values,
    not what they are, so a big-endian float64 (``>f8``, as some writers produce) is a float64.

    Every check of a file's dtype compares this, and every read converts to it (NumPy does
    when the values are copied into the requested native dtype).
    """
    dt = np.dtype(dtype)
    return dt.newbyteorder("=") if dt.byteorder in ("<", ">") else dt


def _open(path: Path) -> h5py.File:
    # stat before open: a FIFO would block forever, a symlink loop would surface as a traceback.
    check_input_file(path, "CaloChallenge HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path}: cannot be opened as HDF5 (truncated or not an HDF5 file: {' '.join(str(exc).split())})"
        ) from None


def inspect_file(
    path: str | os.PathLike[str], geometry: str | Geometry | None = None
) -> ShowerFileInfo:
    """Check a file's structure (datasets, shapes, dtypes, geometry) without reading its data."""
    path = Path(path)
    with _open(path) as f:
        return _check_structure(path, f, geometry)


# What h5py raises on damaged internal structures (object headers, symbol tables, chunk
# indices) besides OSError; none of them can come from a well-formed file.
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _check_structure(path: Path, f: h5py.File, geometry: str | Geometry | None) -> ShowerFileInfo:
    try:
        return _check_structure_unguarded(path, f, geometry)
    except DataError:
        raise
    except _H5_ERRORS as exc:
        raise DataError(
            f"{path}: damaged HDF5 structure ({type(exc).__name__}: {exc}); expected a readable CaloChallenge HDF5 file"
        ) from None


def _check_structure_unguarded(
    path: Path, f: h5py.File, geometry: str | Geometry | None
) -> ShowerFileInfo:
    for key in (ENERGY_KEY, SHOWER_KEY):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise DataError(
                f"{path}: missing dataset {key!r}; a CaloChallenge file holds datasets "
                f"'{ENERGY_KEY}' (N, 1) and '{SHOWER_KEY}' (N, n_voxels), found {sorted(f.keys())}"
            )
    energies, showers = f[ENERGY_KEY], f[SHOWER_KEY]
    for key, ds in ((ENERGY_KEY, energies), (SHOWER_KEY, showers)):
        if native_dtype(ds.dtype) not in FLOAT_DTYPES:
            raise DataError(
                f"{path}: dataset {key!r} has dtype {ds.dtype}; expected float32 or float64 "
                "(either byte order)"
            )
    if energies.ndim not in (1, 2) or (energies.ndim == 2 and energies.shape[1] != 1):
        raise DataError(
            f"{path}: dataset '{ENERGY_KEY}' has shape {energies.shape}; expected (N, 1)"
        )
    if showers.ndim != 2:
        raise DataError(
            f"{path}: dataset '{SHOWER_KEY}' has shape {showers.shape}; expected (N, n_voxels)"
        )
    if showers.shape[1] == 0:
        raise DataError(
            f"{path}: dataset '{SHOWER_KEY}' has 0 voxels per event; expected (N, n_voxels) with "
            "the geometry's voxel count (368 for photons, 533 for pions)"
        )
    if energies.shape[0] != showers.shape[0]:
        raise DataError(
            f"{path}: {energies.shape[0]} incident energies but {showers.shape[0]} showers; "
            "both datasets must hold the same number of events"
        )
    if geometry is not None:
        try:
            geom = load_geometry(geometry)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        if showers.shape[1] != geom.n_voxels:
            raise DataError(
                f"{path}: showers have {showers.shape[1]} voxels per event; geometry "
                f"{geom.name!r} expects {geom.n_voxels}"
            )
    return ShowerFileInfo(
        path,
        int(showers.shape[0]),
        int(showers.shape[1]),
        native_dtype(showers.dtype),
        dict(f.attrs),
    )


def validate_values(
    path: Path | str, energies: np.ndarray, showers: np.ndarray, offset: int = 0
) -> None:
    """Raise :class:`DataError` on NaN/inf, negative voxel energies or non-positive E_inc.

    ``offset`` is the index of the first event of this chunk in the file, for the message.
    """
    if not np.all(np.isfinite(energies)):
        i = offset + int(np.flatnonzero(~np.isfinite(energies))[0])
        raise DataError(
            f"{path}: incident energy of event {i} is not finite; expected positive energies in MeV"
        )
    if np.any(energies <= 0):
        i = offset + int(np.flatnonzero(energies <= 0)[0])
        raise DataError(
            f"{path}: incident energy of event {i} is {energies[i - offset]:g}; expected > 0 MeV"
        )
    if np.any(energies > MAX_ENERGY_MEV):
        i = offset + int(np.flatnonzero(energies > MAX_ENERGY_MEV)[0])
        raise DataError(
            f"{path}: incident energy of event {i} is {energies[i - offset]:g} MeV; expected at most "
            f"{MAX_ENERGY_MEV:g} MeV (values this large are not physical and overflow)"
        )
    finite = np.isfinite(showers)
    if not finite.all():
        i = offset + int(np.flatnonzero(~finite.all(axis=1))[0])
        raise DataError(
            f"{path}: shower of event {i} contains NaN or inf; expected finite voxel energies in MeV"
        )
    if np.any(showers < 0):
        i = offset + int(np.flatnonzero((showers < 0).any(axis=1))[0])
        raise DataError(
            f"{path}: shower of event {i} has negative voxel energies; expected ≥ 0 MeV"
        )
    if np.any(showers > MAX_ENERGY_MEV):
        i = offset + int(np.flatnonzero((showers > MAX_ENERGY_MEV).any(axis=1))[0])
        raise DataError(
            f"{path}: shower of event {i} has a voxel energy above {MAX_ENERGY_MEV:g} MeV; expected "
            "physical energies (values this large overflow)"
        )


def iter_showers(
    path: str | os.PathLike[str],
    chunk_size: int = DEFAULT_CHUNK,
    *,
    geometry: str | Geometry | None = None,
    validate: bool = True,
    dtype: np.dtype | type = np.float64,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[ShowerData]:
    """Yield consecutive chunks of at most ``chunk_size`` events from ``path``.

    Memory use is bounded by the chunk size, not by the file. Values are checked chunk by
    chunk when ``validate`` is true; arrays are converted to ``dtype``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    path = Path(path)
    with _open(path) as f:
        info = _check_structure(path, f, geometry)
        stop = info.n_events if stop is None else min(stop, info.n_events)
        energies_ds, showers_ds = f[ENERGY_KEY], f[SHOWER_KEY]
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            try:
                energies = np.asarray(energies_ds[lo:hi], dtype=dtype).reshape(-1)
                showers = np.asarray(showers_ds[lo:hi], dtype=dtype)
            except _H5_ERRORS as exc:
                raise DataError(
                    f"{path}: events {lo}-{hi} cannot be read (file truncated or corrupt: {exc})"
                ) from None
            if validate:
                validate_values(path, energies, showers, offset=lo)
            yield ShowerData(energies, showers)


def read_energies(
    path: str | os.PathLike[str], *, geometry: str | Geometry | None = None
) -> np.ndarray:
    """The incident energies (N,) float64 MeV of a CaloChallenge file, checked as every reader
    checks them (finite, > 0), without reading the showers."""
    path = Path(path)
    with _open(path) as f:
        info = _check_structure(path, f, geometry)
        try:
            energies = np.asarray(f[ENERGY_KEY][...], dtype=np.float64).reshape(-1)
        except _H5_ERRORS as exc:
            raise DataError(
                f"{path}: incident energies cannot be read (file truncated or corrupt: {exc})"
            ) from None
    validate_values(path, energies, np.zeros((0, info.n_voxels)))
    return energies


def read_showers(
    path: str | os.PathLike[str],
    *,
    geometry: str | Geometry | None = None,
    validate: bool = True,
    dtype: np.dtype | type = np.float64,
    max_events: int | None = None,
) -> ShowerData:
    """Read a whole file (or its first ``max_events`` events) into memory."""
    path = Path(path)
    info = inspect_file(path, geometry)
    n_events = info.n_events if max_events is None else max(0, min(max_events, info.n_events))
    # Chunks are copied into arrays allocated once, so the peak is the result plus one chunk
    # (concatenating a list of chunks would hold the data twice).
    energies = np.empty(n_events, dtype=dtype)
    showers = np.empty((n_events, info.n_voxels), dtype=dtype)
    filled = 0
    for chunk in iter_showers(
        path, geometry=geometry, validate=validate, dtype=dtype, stop=n_events
    ):
        energies[filled : filled + len(chunk)] = chunk.incident_energies
        showers[filled : filled + len(chunk)] = chunk.showers
        filled += len(chunk)
    if filled != n_events:  # only if the file changed between the two opens
        raise DataError(
            f"{path}: read {filled} events, expected {n_events}; was the file modified while reading?"
        )
    return ShowerData(energies, showers)


class ShowerWriter:
    """Stream showers into a new CaloChallenge file, atomically.

    Use as a context manager; the file appears under ``path`` only when the block exits
    without an exception. ``dtype`` defaults to float64, the CaloChallenge evaluation's choice
    (its classifier crashes on float32 voxels).

    Example::

        with ShowerWriter("gen.h5", n_voxels=368) as w:
            for e_inc, showers in batches:
                w.append(e_inc, showers)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_voxels: int,
        *,
        dtype: np.dtype | type = np.float64,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = 1000,
        compression_level: int = 4,
        expected_events: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.expected_events = expected_events
        self.n_voxels = int(n_voxels)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.attrs = dict(attrs or {})
        self.chunk_rows = chunk_rows
        self.compression_level = compression_level
        self.n_events = 0
        self._ctx: Any = None
        self._file: h5py.File | None = None
        self._sink: _Sink | None = None

    def __enter__(self) -> ShowerWriter:
        if self.expected_events is not None:
            # HDF5 has crashed (segfault) on a full disk: refuse before writing the first byte.

            check_disk_space(
                self.path,
                self.expected_events * (self.n_voxels + 1) * self.dtype.itemsize,
                f"{self.expected_events} events × {self.n_voxels} voxels ({self.dtype}, uncompressed)",
                "free some space, write elsewhere, or ask for fewer events",
            )
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._create(tmp)
        except BaseException as exc:
            # __exit__ is not called when __enter__ fails: close and remove the temp file here
            # rather than relying on garbage collection to do it.
            error = self._close()
            if error is not None and exc is not error:
                clean = write_failure(self.path, self._sink.error or error) if self._sink else None
                exc = clean or exc
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise exc from None
        return self

    def _close(self) -> BaseException | None:
        """Close the HDF5 file and its sink; the error closing raised, if any (not raised here)."""
        file, self._file = self._file, None
        error: BaseException | None = None
        if self._sink is not None and self._sink.error is not None:
            self._sink.discard = True  # a write already failed: let HDF5 close without writing
        if file is not None:
            try:
                file.close()
            except BaseException as exc:  # noqa: BLE001 - the sink must be closed in every case
                error = exc
        if self._sink is not None:
            if error is not None or self._sink.error is not None:
                self._sink.discard = True
                if file is not None:
                    with contextlib.suppress(Exception):
                        file.close()  # again, now that writes cannot fail
            self._sink.close()
        return error or (self._sink.error if self._sink is not None else None)

    def _create(self, tmp: Path) -> None:
        # HDF5 writes through a Python file object: once a write has failed (full disk) the
        # sink drops HDF5's remaining writes, so that HDF5 can still release the file instead of
        # retrying the flush at exit (where it has crashed with a segmentation fault).
        self._sink = _Sink(open(tmp, "w+b"))  # noqa: SIM115 - closed in _close
        self._file = h5py.File(self._sink, "w")
        opts = dict(compression="gzip", compression_opts=self.compression_level, dtype=self.dtype)
        self._file.create_dataset(
            ENERGY_KEY,
            shape=(0, 1),
            maxshape=(None, 1),
            chunks=(max(self.chunk_rows, 1), 1),
            **opts,
        )
        self._file.create_dataset(
            SHOWER_KEY,
            shape=(0, self.n_voxels),
            maxshape=(None, self.n_voxels),
            chunks=(max(1, min(self.chunk_rows, 2**20 // max(self.n_voxels, 1))), self.n_voxels),
            **opts,
        )
        for key, value in self.attrs.items():
            self._file.attrs[key] = value

    def append(self, incident_energies: np.ndarray, showers: np.ndarray) -> None:
        """Append events: ``incident_energies`` (n,) or (n, 1) MeV, ``showers`` (n, n_voxels) MeV."""
        assert self._file is not None, "use ShowerWriter as a context manager"
        energies = np.asarray(incident_energies, dtype=self.dtype).reshape(-1, 1)
        showers = np.asarray(showers, dtype=self.dtype)
        if showers.ndim != 2 or showers.shape[1] != self.n_voxels:
            raise ValueError(f"showers must have shape (n, {self.n_voxels}), got {showers.shape}")
        if len(energies) != len(showers):
            raise ValueError(f"{len(energies)} incident energies for {len(showers)} showers")
        n = len(showers)
        try:
            for key, values in ((ENERGY_KEY, energies), (SHOWER_KEY, showers)):
                ds = self._file[key]
                ds.resize(self.n_events + n, axis=0)
                ds[self.n_events :] = values
                # Push the data to the file now: a full disk is then reported here, as an error,
                # rather than inside HDF5's close, which has crashed on it.
                ds.flush()
        except (OSError, RuntimeError) as exc:
            failure = self._sink.error if self._sink is not None and self._sink.error else exc
            clean = write_failure(self.path, failure)
            if clean is None:
                raise
            raise clean from None
        self.n_events += n

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        assert self._file is not None
        error = self._close()
        if exc is None and error is not None:
            clean = write_failure(self.path, error)
            failure: BaseException = clean if clean is not None else error
            # Removes the temp file (and raises the OutputError of a full disk).
            self._ctx.__exit__(type(failure), failure, failure.__traceback__)
            raise failure
        return bool(self._ctx.__exit__(exc_type, exc, tb))


class _Sink(io.RawIOBase):
    """The file object HDF5 writes through: records the first failed write and, once told to
    ``discard``, accepts and drops every further write."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw
        self.error: OSError | None = None
        self.discard = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return int(self.raw.readinto(buffer))

    def write(self, data: Any) -> int:
        if self.discard:
            return len(memoryview(data))
        try:
            return int(self.raw.write(data))
        except OSError as exc:
            self.error = self.error or exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self.raw.tell())

    def truncate(self, size: int | None = None) -> int:
        if self.discard:
            return int(size if size is not None else self.raw.tell())
        try:
            return int(self.raw.truncate(size))
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        if self.discard or self.raw.closed:
            return
        try:
            self.raw.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def close(self) -> None:
        if not self.raw.closed:
            if self.discard:
                with contextlib.suppress(OSError):
                    self.raw.close()
            else:
                self.raw.close()
        super().close()


def write_showers(
    path: str | os.PathLike[str],
    incident_energies: np.ndarray,
    showers: np.ndarray,
    *,
    dtype: np.dtype | type = np.float64,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one CaloChallenge file atomically; returns its path."""
    showers = np.asarray(showers)
    with ShowerWriter(path, showers.shape[1], dtype=dtype, attrs=attrs) as writer:
        writer.append(incident_energies, showers)
    return Path(path)
