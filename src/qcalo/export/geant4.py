"""The Geant4 side of an exported model: where each voxel's energy is deposited.

The fast-simulation model of ``examples/geant4/`` (C++, ``QcaloFastSimModel``) does, for a
photon of energy E (MeV) entering the calorimeter at ``entry`` (mm) with unit ``direction``:

1. run the exported ONNX model on E and the noise → one shower (V,) MeV;
2. place voxel v at ``entry + x_v·u + y_v·w + z_v·direction`` (mm), where (x_v, y_v) =
   (r_mid cos α_mid, r_mid sin α_mid) are its CaloChallenge transverse coordinates
   (:class:`qcalo.data.geometry.Geometry` ``eta``/``phi``) and z_v the middle of its layer in a
   stack of layers of the given thicknesses; (u, w, direction) is the right-handed frame with
   u = CLHEP's ``direction.orthogonal().unit()`` and w = direction × u;
3. deposit every voxel with energy > 0 there, then kill the photon.

This module is that arithmetic in NumPy, line for line, so it is tested without Geant4.

Example::

    >>> from qcalo.data.geometry import load_geometry
    >>> centres = voxel_centres(load_geometry("photons"), [50.0] * 5)
    >>> centres.shape, float(centres[0, 2])
    ((368, 3), 25.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qcalo.data.geometry import Geometry

__all__ = ["clhep_orthogonal", "energy_deposits", "shower_frame", "voxel_centres"]


def voxel_centres(geometry: Geometry, layer_thickness_mm: Sequence[float]) -> np.ndarray:
    """Voxel centres (V, 3) mm in the shower frame: transverse (x, y) from the binning, depth z
    the middle of the voxel's layer when the L layers of the given thicknesses (mm) are stacked
    from z = 0 along the shower axis."""
    thickness = np.asarray(layer_thickness_mm, dtype=np.float64).reshape(-1)
    if thickness.shape != (geometry.n_layers,) or np.any(thickness <= 0):
        raise ValueError(
            f"layer_thickness_mm: expected {geometry.n_layers} positive thicknesses, got "
            f"{thickness.tolist()}"
        )
    middles = np.cumsum(thickness) - thickness / 2
    depth = middles[geometry.layer_index_of_voxel]
    return np.stack([geometry.eta, geometry.phi, depth], axis=1)


def clhep_orthogonal(v: np.ndarray) -> np.ndarray:
    """CLHEP's ``Hep3Vector::orthogonal()``: a vector orthogonal to ``v`` (3,), not normalised."""
    x, y, z = (float(c) for c in v)
    ax, ay, az = abs(x), abs(y), abs(z)
    if ax < ay:
        return np.array([0.0, z, -y]) if ax < az else np.array([y, -x, 0.0])
    return np.array([-z, 0.0, x]) if ay < az else np.array([y, -x, 0.0])


def shower_frame(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rows u, w, d: the unit shower axis d = ``direction``/|direction|, u =
    orthogonal(d) normalised, w = d × u (right-handed: u × w = d)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    u = clhep_orthogonal(d)
    u = u / np.linalg.norm(u)
    w = np.cross(d, u)
    return np.stack([u, w, d])


def energy_deposits(
    shower: np.ndarray, centres: np.ndarray, entry: np.ndarray, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(positions (K, 3) mm, energies (K,) MeV) of the voxels of ``shower`` (V,) MeV with
    energy > 0, their shower-frame ``centres`` (V, 3) mm placed at ``entry`` (3,) mm along
    ``direction`` (3,), in voxel order."""
    values = np.asarray(shower, dtype=np.float64).reshape(-1)
    if values.shape[0] != centres.shape[0]:
        raise ValueError(f"shower has {values.shape[0]} voxels; centres {centres.shape[0]}")
    hit = values > 0
    frame = shower_frame(direction)
    positions = np.asarray(entry, dtype=np.float64)[None, :] + centres[hit] @ frame
    return positions, values[hit]
