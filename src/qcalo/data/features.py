"""CaloChallenge high-level shower features and the classifier's feature columns.

Definitions follow the CaloChallenge 2022 evaluation (``HighLevelFeatures.py`` and the
high-level classifier input of ``evaluate.py``); see docs/design/metrics.md#high-level-features.
Voxels below ``threshold_mev`` (1 MeV in the CaloChallenge DS1 evaluation) are set to 0 first, and every
feature is computed from the thresholded showers:

* ``e_layer``: energy per layer, MeV; ``e_tot``: the sum over all voxels, MeV;
* ``ec_eta``, ``ec_phi``, ``ec_r``: energy-weighted mean of the voxel-centre coordinate in each
  layer, mm (``eta = r·cos α``, ``phi = r·sin α``, ``r`` the radial bin centre), with the
  CaloChallenge's ``+1e-16`` in the denominator so that empty layers give 0;
* ``width_*``: ``sqrt(max(0, <x²> - <x>²))`` with the same weights, mm;
* ``sparsity``: ``1 -`` the fraction of the layer's voxels with ``E > 0`` (after the threshold).

The classifier columns (30 for the DS1 photons, 46 for the pions) are, in this order::

    log10 E_inc | log10(E_layer + 1e-8) every layer | over the alpha-binned layers only:
    EC_eta/100, then EC_phi/100, then width_eta/100, then width_phi/100 |
    log10(E_tot + 1e-8) | sparsity every layer | EC_r/100 every layer | width_r/100 every layer

Everything is vectorised: per layer, one (N, V_l) @ (V_l, 7) matrix product gives all the
energy-weighted sums.

Example::

    >>> feats = features_from_file("g4_photons_dev.h5", "photons")
    >>> X = classifier_columns(feats, "photons")          # (N, 30)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from qcalo.data.geometry import Geometry, geometry_for_voxel_count, load_geometry
from qcalo.data.io import DEFAULT_CHUNK, inspect_file, iter_showers
from qcalo.errors import ConfigError, DataError
from qcalo.utils.atomic import atomic_path
from qcalo.utils.progress import progress

__all__ = [
    "ShowerFeatures",
    "compute_features",
    "classifier_columns",
    "classifier_column_names",
    "iter_features",
    "features_from_file",
    "write_features",
    "DEFAULT_THRESHOLD_MEV",
]

DEFAULT_THRESHOLD_MEV = 1.0
_EPS_DENOMINATOR = 1e-16  # CaloChallenge: every energy-weighted mean divides by (sum + 1e-16)
_EPS_LOG = 1e-8  # CaloChallenge: log10(E + 1e-8) for layer and total energies


@dataclass
class ShowerFeatures:
    """High-level features of N showers; float64 arrays, L = ``geometry.n_layers``.

    Attributes:
        e_inc: (N,) incident energy, MeV.
        e_layer: (N, L) energy per layer after the threshold, MeV.
        e_tot: (N,) total energy after the threshold, MeV.
        ec_eta, ec_phi: (N, L) centre of energy along η / φ, mm (every layer; for layers with
            one angular bin φ is 0 and η equals the radial centre, as in the CaloChallenge).
        width_eta, width_phi: (N, L) energy-weighted standard deviation along η / φ, mm.
        ec_r, width_r: (N, L) centre of energy and width in r, mm.
        sparsity: (N, L) 1 - fraction of the layer's voxels with E > 0 after the threshold.
    """

    e_inc: np.ndarray
    e_layer: np.ndarray
    e_tot: np.ndarray
    ec_eta: np.ndarray
    ec_phi: np.ndarray
    width_eta: np.ndarray
    width_phi: np.ndarray
    ec_r: np.ndarray
    width_r: np.ndarray
    sparsity: np.ndarray

    def __len__(self) -> int:
        return len(self.e_inc)

    @classmethod
    def concatenate(cls, parts: list[ShowerFeatures]) -> ShowerFeatures:
        """Join features of consecutive chunks along the event axis."""
        if not parts:
            raise ValueError("need at least one ShowerFeatures to concatenate")
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def select(self, index: np.ndarray | slice) -> ShowerFeatures:
        """The features of a subset of events (boolean mask, indices or slice)."""
        return ShowerFeatures(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@lru_cache(maxsize=8)
def _moment_matrices(geometry: Geometry) -> tuple[np.ndarray, ...]:
    """Per layer, a (n_voxels_in_layer, 7) matrix whose product with that layer's voxel energies
    gives the sums of E, E·η, E·η², E·φ, E·φ², E·r and E·r²."""
    matrices = []
    for s in geometry.layer_slices:
        eta, phi, r = geometry.eta[s], geometry.phi[s], geometry.r[s]
        matrix = np.stack([np.ones_like(r), eta, eta**2, phi, phi**2, r, r**2], axis=1)
        matrix.flags.writeable = False
        matrices.append(matrix)
    return tuple(matrices)


def _as_geometry(geometry: str | os.PathLike[str] | Geometry) -> Geometry:
    return load_geometry(geometry)


def compute_features(
    incident_energies: np.ndarray,
    showers: np.ndarray,
    geometry: str | os.PathLike[str] | Geometry,
    threshold_mev: float = DEFAULT_THRESHOLD_MEV,
) -> ShowerFeatures:
    """High-level features of showers held in memory.

    Args:
        incident_energies: (N,) or (N, 1) MeV.
        showers: (N, V) voxel energies, MeV, V = ``geometry.n_voxels``; not modified.
        geometry: a :class:`Geometry`, a built-in name or a binning XML path.
        threshold_mev: voxels with E < threshold (MeV) count as 0 (CaloChallenge: 1 MeV);
            0 keeps every voxel.

    Returns:
        :class:`ShowerFeatures` (float64).
    """
    geom = _as_geometry(geometry)
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    x = np.asarray(showers)
    if x.ndim != 2 or x.shape[1] != geom.n_voxels:
        raise DataError(
            f"showers have shape {x.shape}; geometry {geom.name!r} expects (N, {geom.n_voxels})"
        )
    if x.shape[0] != e_inc.shape[0]:
        raise DataError(
            f"{e_inc.shape[0]} incident energies for {x.shape[0]} showers; expected one per shower"
        )
    if not np.isfinite(threshold_mev) or threshold_mev < 0:
        raise ConfigError(
            f"threshold {threshold_mev!r} MeV is invalid; expected a finite value ≥ 0"
        )
    # One float64 copy, zeroed below the threshold as the CaloChallenge does (data[data < cut] = 0);
    # the caller's array is never modified.
    x = np.array(x, dtype=np.float64, copy=True)
    x[x < threshold_mev] = 0.0

    n_layers = geom.n_layers
    # (N, 7, L): one small matrix product per layer (a NaN voxel spoils only its own layer).
    sums = np.stack(
        [x[:, s] @ m for s, m in zip(geom.layer_slices, _moment_matrices(geom))], axis=2
    )
    e_layer, s_eta, s_eta2, s_phi, s_phi2, s_r, s_r2 = (sums[:, k, :] for k in range(7))
    denominator = e_layer + _EPS_DENOMINATOR
    ec_eta, ec_phi, ec_r = s_eta / denominator, s_phi / denominator, s_r / denominator
    width_eta = np.sqrt(np.clip(s_eta2 / denominator - ec_eta**2, 0.0, None))
    width_phi = np.sqrt(np.clip(s_phi2 / denominator - ec_phi**2, 0.0, None))
    width_r = np.sqrt(np.clip(s_r2 / denominator - ec_r**2, 0.0, None))

    n_voxels_per_layer = np.array([layer.n_voxels for layer in geom.layers], dtype=np.float64)
    layer_starts = [s.start for s in geom.layer_slices]
    n_hit = (
        np.add.reduceat((x > 0).view(np.uint8), layer_starts, axis=1, dtype=np.int64)
        if len(x)
        else np.zeros((0, n_layers))
    )
    sparsity = 1.0 - n_hit / n_voxels_per_layer

    return ShowerFeatures(
        e_inc=e_inc,
        e_layer=np.ascontiguousarray(e_layer),
        e_tot=x.sum(axis=1),
        ec_eta=ec_eta,
        ec_phi=ec_phi,
        width_eta=width_eta,
        width_phi=width_phi,
        ec_r=ec_r,
        width_r=width_r,
        sparsity=sparsity,
    )


def classifier_column_names(geometry: str | os.PathLike[str] | Geometry) -> list[str]:
    """Names of the :func:`classifier_columns`, e.g. ``log10_E_layer12``, ``EC_eta_layer1``."""
    geom = _as_geometry(geometry)
    ids = geom.layer_ids
    alpha_ids = [ids[i] for i in geom.alpha_binned_layers]
    names = ["log10_E_inc"]
    names += [f"log10_E_layer{i}" for i in ids]
    for quantity in ("EC_eta", "EC_phi", "width_eta", "width_phi"):
        names += [f"{quantity}_layer{i}" for i in alpha_ids]
    names.append("log10_E_tot")
    names += [f"sparsity_layer{i}" for i in ids]
    names += [f"EC_r_layer{i}" for i in ids]
    names += [f"width_r_layer{i}" for i in ids]
    return names


def classifier_columns(
    features: ShowerFeatures, geometry: str | os.PathLike[str] | Geometry
) -> np.ndarray:
    """The CaloChallenge high-level classifier input, (N, 30) for DS1 photons, (N, 46) for pions.

    Column order as in the module docstring; names from :func:`classifier_column_names`.
    Lengths stay in units of 100 mm, energies in log10(MeV).
    """
    geom = _as_geometry(geometry)
    if features.e_layer.shape[1] != geom.n_layers:
        raise DataError(
            f"features have {features.e_layer.shape[1]} layers; geometry {geom.name!r} has {geom.n_layers}"
        )
    alpha = list(geom.alpha_binned_layers)
    columns = [
        np.log10(features.e_inc)[:, None],
        np.log10(features.e_layer + _EPS_LOG),
        features.ec_eta[:, alpha] / 100.0,
        features.ec_phi[:, alpha] / 100.0,
        features.width_eta[:, alpha] / 100.0,
        features.width_phi[:, alpha] / 100.0,
        np.log10(features.e_tot + _EPS_LOG)[:, None],
        features.sparsity,
        features.ec_r / 100.0,
        features.width_r / 100.0,
    ]
    return np.concatenate(columns, axis=1)


def iter_features(
    path: str | os.PathLike[str],
    geometry: str | os.PathLike[str] | Geometry,
    threshold_mev: float = DEFAULT_THRESHOLD_MEV,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[ShowerFeatures]:
    """Features of a file chunk by chunk (memory bounded by ``chunk_size``, not by the file)."""
    geom = _as_geometry(geometry)
    for chunk in iter_showers(path, chunk_size, geometry=geom):
        yield compute_features(chunk.incident_energies, chunk.showers, geom, threshold_mev)


def features_from_file(
    path: str | os.PathLike[str],
    geometry: str | os.PathLike[str] | Geometry,
    threshold_mev: float = DEFAULT_THRESHOLD_MEV,
    chunk_size: int = DEFAULT_CHUNK,
) -> ShowerFeatures:
    """Features of every event in a CaloChallenge file, streamed through :func:`iter_showers`.

    Only one chunk of showers is in memory at a time; the result holds 2 + 8·L float64
    numbers per event (336 bytes for the DS1 photons, 464 for the pions).
    """
    geom = _as_geometry(geometry)
    n_events = inspect_file(path, geom).n_events
    # Filled in place (not concatenated) so the peak is the result plus one chunk, not twice it.
    result = compute_features(np.zeros(0), np.zeros((0, geom.n_voxels)), geom, threshold_mev)
    for f in fields(result):
        setattr(result, f.name, np.empty((n_events, *getattr(result, f.name).shape[1:])))
    filled = 0
    with progress(total=n_events, desc="features", unit="ev") as bar:
        for part in iter_features(path, geom, threshold_mev, chunk_size):
            for f in fields(result):
                getattr(result, f.name)[filled : filled + len(part)] = getattr(part, f.name)
            filled += len(part)
            bar.update(len(part))
    if filled != n_events:  # cannot happen with a file that does not change while being read
        raise DataError(
            f"{path}: read {filled} events, expected {n_events}; was the file modified while reading?"
        )
    return result


def write_features(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    geometry: str | os.PathLike[str] | Geometry | None = None,
    *,
    threshold_mev: float = DEFAULT_THRESHOLD_MEV,
    chunk_size: int = DEFAULT_CHUNK,
) -> Path:
    """Compute the classifier feature columns of ``path`` and write them to ``out`` (npz), atomically.

    ``geometry`` defaults to the built-in geometry with the file's voxel count. Returns ``out``.
    """
    if geometry is None:
        n_voxels = inspect_file(path).n_voxels
        geom = geometry_for_voxel_count(n_voxels)
        if geom is None:
            raise DataError(
                f"{path}: no built-in geometry has {n_voxels} voxels; pass --geometry PATH.xml"
            )
    else:
        geom = load_geometry(geometry)
    features = features_from_file(path, geom, threshold_mev, chunk_size)
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        # A file object, because np.savez appends ".npz" to a path that lacks it (the temp name).
        np.savez(
            handle,
            features=classifier_columns(features, geom),
            names=np.array(classifier_column_names(geom)),
            incident_energies=features.e_inc,
            threshold_mev=np.float64(threshold_mev),
            geometry=np.array(geom.name),
        )
    return out
