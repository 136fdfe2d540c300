"""A streamed summary of a CaloChallenge file: what ``qcalo info`` prints.

:func:`file_info` reads the file chunk by chunk (memory bounded by the chunk size) and returns a
plain dict (JSON-serialisable); :func:`format_file_info` renders it as text.

Example::

    >>> info = file_info("g4_photons_dev.h5")
    >>> info["n_events"], info["geometry"], info["e_ratio_mean"]
    (40500, 'photons', 0.97...)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from qcalo.data.geometry import Geometry, geometry_for_voxel_count, load_geometry
from qcalo.data.io import DEFAULT_CHUNK, inspect_file, iter_showers
from qcalo.utils.progress import progress

__all__ = ["file_info", "format_file_info", "MAX_LISTED_ENERGIES"]

MAX_LISTED_ENERGIES = 30  # distinct incident energies are listed with counts up to this many


class _RunningMoments:
    """Mean and variance of a stream of numbers, merged chunk by chunk (Chan et al.)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        n_b, mean_b = values.size, float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta**2 * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n else float("nan")


def file_info(
    path: str | os.PathLike[str],
    geometry: str | os.PathLike[str] | Geometry | None = None,
    *,
    threshold_mev: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, Any]:
    """Summarise a CaloChallenge file in one streaming pass.

    Args:
        path: the HDF5 file.
        geometry: checked against the voxel count when given; otherwise the built-in geometry
            with the file's voxel count is used if there is one (per-layer numbers need one).
        threshold_mev: also report the fraction of voxels below this energy (MeV).
        chunk_size: events per chunk read.

    Returns:
        A dict with ``path``, ``n_events``, ``dtype``, ``n_voxels``, ``geometry`` (name or
        None), ``e_inc_min``/``e_inc_max`` (MeV), ``n_distinct_energies``, ``energy_counts``
        ({MeV: count} when at most 30 distinct energies, else None), ``e_ratio_mean`` /
        ``e_ratio_std`` (E_tot/E_inc over events), ``zero_voxel_fraction`` (voxels exactly 0),
        ``below_threshold_fraction`` (voxels < ``threshold_mev``), ``n_empty_showers`` (E_tot = 0),
        ``layer_ids`` and ``layer_energy_fraction_mean`` (mean over non-empty showers of
        E_layer/E_tot, one per layer), ``attrs`` (the file's attribute names).
        Raises :class:`qcalo.errors.DataError` for unreadable or invalid files.
    """
    path = Path(path)
    structure = inspect_file(
        path, os.fspath(geometry) if isinstance(geometry, os.PathLike) else geometry
    )
    geom: Geometry | None
    if geometry is not None:
        geom = load_geometry(geometry)
    else:
        geom = geometry_for_voxel_count(structure.n_voxels)

    e_min, e_max = np.inf, -np.inf
    distinct = np.zeros(0)
    counts = np.zeros(0, dtype=np.int64)
    e_ratio = _RunningMoments()
    n_zero = n_below = 0
    n_empty = 0
    layer_fraction_sum = np.zeros(geom.n_layers) if geom is not None else None

    with progress(total=structure.n_events, desc="info", unit="ev") as bar:
        for chunk in iter_showers(path, chunk_size, geometry=geom):
            energies, showers = chunk.incident_energies, chunk.showers
            e_min, e_max = min(e_min, float(energies.min())), max(e_max, float(energies.max()))
            values, chunk_counts = np.unique(energies, return_counts=True)
            merged, inverse = np.unique(np.concatenate([distinct, values]), return_inverse=True)
            merged_counts = np.zeros(len(merged), dtype=np.int64)
            np.add.at(merged_counts, inverse, np.concatenate([counts, chunk_counts]))
            distinct, counts = merged, merged_counts

            e_tot = showers.sum(axis=1)
            e_ratio.update(e_tot / energies)
            n_zero += int(np.count_nonzero(showers == 0))
            n_below += int(np.count_nonzero(showers < threshold_mev))
            nonempty = e_tot > 0
            n_empty += int(np.count_nonzero(~nonempty))
            if geom is not None and layer_fraction_sum is not None:
                layers = geom.layer_energies(showers[nonempty])
                layer_fraction_sum += (layers / e_tot[nonempty, None]).sum(axis=0)
            bar.update(len(chunk))

    n_events, n_voxels = structure.n_events, structure.n_voxels
    n_cells = n_events * n_voxels
    n_nonempty = n_events - n_empty
    listed = len(distinct) <= MAX_LISTED_ENERGIES
    return {
        "path": str(path),
        "n_events": n_events,
        "dtype": str(structure.dtype),
        "n_voxels": n_voxels,
        "geometry": geom.name if geom is not None else None,
        "e_inc_min": float(e_min) if n_events else None,
        "e_inc_max": float(e_max) if n_events else None,
        "n_distinct_energies": int(len(distinct)),
        "energy_counts": {float(e): int(c) for e, c in zip(distinct, counts)} if listed else None,
        "e_ratio_mean": e_ratio.mean if n_events else None,
        "e_ratio_std": e_ratio.std if n_events else None,
        "zero_voxel_fraction": n_zero / n_cells if n_cells else None,
        "threshold_mev": float(threshold_mev),
        "below_threshold_fraction": n_below / n_cells if n_cells else None,
        "n_empty_showers": n_empty,
        "layer_ids": list(geom.layer_ids) if geom is not None else None,
        "layer_energy_fraction_mean": (
            (layer_fraction_sum / n_nonempty).tolist()
            if geom is not None and layer_fraction_sum is not None and n_nonempty
            else None
        ),
        "attrs": sorted(structure.attrs),
    }


def _mev(value: float) -> str:
    return f"{value / 1000:g} GeV" if value >= 1000 else f"{value:g} MeV"


def format_file_info(info: dict[str, Any]) -> str:
    """Human-readable text of a :func:`file_info` dict."""
    lines = [
        f"file:               {info['path']}",
        f"events:             {info['n_events']}",
        f"dtype:              {info['dtype']}",
    ]
    geometry = info["geometry"] or "no built-in geometry has this many voxels"
    lines.append(f"voxels per event:   {info['n_voxels']} ({geometry})")
    if not info["n_events"]:
        return "\n".join(lines)
    lines.append(
        f"incident energy:    {_mev(info['e_inc_min'])} .. {_mev(info['e_inc_max'])}, {info['n_distinct_energies']} distinct"
    )
    if info["energy_counts"] is not None:
        for energy, count in info["energy_counts"].items():
            lines.append(f"  {_mev(energy):>14}: {count}")
    lines.append(
        f"E_tot / E_inc:      {info['e_ratio_mean']:.4f} ± {info['e_ratio_std']:.4f} (mean ± std)"
    )
    lines.append(f"zero voxels:        {100 * info['zero_voxel_fraction']:.2f} %")
    lines.append(
        f"voxels < {info['threshold_mev']:g} MeV:".ljust(20)
        + f"{100 * info['below_threshold_fraction']:.2f} %"
    )
    if info["n_empty_showers"]:
        lines.append(f"empty showers:      {info['n_empty_showers']}")
    if info["layer_energy_fraction_mean"] is not None:
        lines.append("mean energy fraction per layer (E_layer / E_tot):")
        for layer_id, fraction in zip(info["layer_ids"], info["layer_energy_fraction_mean"]):
            lines.append(f"  layer {layer_id:>2}: {fraction:.4f}")
    return "\n".join(lines)
