"""Calorimeter geometry in the CaloChallenge convention.

Each layer is binned in polar coordinates around the shower axis: radial edges ``r_edges`` (mm)
and ``n_alpha`` angular bins splitting [-π, π) evenly, centres at the bin midpoints. Within a
layer voxels are ordered with the angular bin as the outer loop and the radial bin as the inner
one (``index = alpha_bin * n_r + r_bin``); layers are concatenated in id order, and ids whose
``r_edges`` is ``"0"`` hold no voxels. Cartesian voxel centres follow the CaloChallenge
``XMLHandler``: ``eta = r_mid * cos(alpha)``, ``phi = r_mid * sin(alpha)`` (mm).

The ATLAS dataset-1 geometries ship built in (``load_geometry("photons")`` /
``load_geometry("pions")``); any CaloChallenge binning XML loads with ``load_geometry(path)``.

Example::

    >>> g = load_geometry("photons")
    >>> g.n_voxels, g.layer_ids
    (368, (0, 1, 2, 3, 12))
    >>> g.layer_slices[1]
    slice(8, 168, None)
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from qcalo.errors import DataError

__all__ = ["Layer", "Geometry", "load_geometry", "BUILTIN_GEOMETRIES", "geometry_for_voxel_count"]


@dataclass(frozen=True)
class Layer:
    """One calorimeter layer: radial edges in mm and the number of angular bins."""

    id: int
    r_edges: tuple[float, ...]
    n_alpha: int

    @property
    def n_r(self) -> int:
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha

    @property
    def r_mid(self) -> np.ndarray:
        """Radial bin centres, mm, shape (n_r,)."""
        edges = np.asarray(self.r_edges, dtype=np.float64)
        return 0.5 * (edges[:-1] + edges[1:])

    @property
    def alpha_mid(self) -> np.ndarray:
        """Angular bin centres, rad, shape (n_alpha,): midpoints of linspace(-π, π, n_alpha+1)."""
        edges = np.linspace(-math.pi, math.pi, self.n_alpha + 1)
        return 0.5 * (edges[:-1] + edges[1:])


@dataclass(frozen=True)
class Geometry:
    """The voxelisation of one dataset: its non-empty layers in id order.

    Attributes are immutable; the per-voxel arrays below are computed once and cached.
    ``name`` is the built-in name (``photons``/``pions``) or the XML path it came from.
    """

    name: str
    particle: str
    layers: tuple[Layer, ...]
    source: str = field(default="builtin", compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise DataError(f"geometry {self.name!r}: no layer has voxels (all r_edges are '0')")
        for layer in self.layers:
            edges = np.asarray(layer.r_edges)
            if np.any(np.diff(edges) <= 0) or edges[0] < 0:
                raise DataError(
                    f"geometry {self.name!r}: layer {layer.id} r_edges {layer.r_edges} must be "
                    "non-negative and strictly increasing"
                )
            if layer.n_alpha < 1:
                raise DataError(
                    f"geometry {self.name!r}: layer {layer.id} has n_bin_alpha={layer.n_alpha}; expected ≥ 1"
                )

    # ----- layer bookkeeping -------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(layer.id for layer in self.layers)

    @cached_property
    def n_voxels(self) -> int:
        return sum(layer.n_voxels for layer in self.layers)

    @cached_property
    def layer_slices(self) -> tuple[slice, ...]:
        """Voxel-index slice of each layer (same order as ``layers``)."""
        out, start = [], 0
        for layer in self.layers:
            out.append(slice(start, start + layer.n_voxels))
            start += layer.n_voxels
        return tuple(out)

    @cached_property
    def layer_index_of_voxel(self) -> np.ndarray:
        """Index (0..n_layers-1) of the layer each voxel belongs to, shape (n_voxels,)."""
        return np.repeat(np.arange(self.n_layers), [layer.n_voxels for layer in self.layers])

    @property
    def alpha_binned_layers(self) -> tuple[int, ...]:
        """Indices (into ``layers``) of the layers with more than one angular bin."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.n_alpha > 1)

    # ----- per-voxel coordinates -----------------------------------------------------------
    @cached_property
    def r_bin(self) -> np.ndarray:
        """Radial bin index of each voxel within its layer, shape (n_voxels,)."""
        return np.concatenate([np.tile(np.arange(l.n_r), l.n_alpha) for l in self.layers])

    @cached_property
    def alpha_bin(self) -> np.ndarray:
        """Angular bin index of each voxel within its layer, shape (n_voxels,)."""
        return np.concatenate([np.repeat(np.arange(l.n_alpha), l.n_r) for l in self.layers])

    @cached_property
    def r(self) -> np.ndarray:
        """Radial bin centre of each voxel, mm, shape (n_voxels,)."""
        return np.concatenate([np.tile(l.r_mid, l.n_alpha) for l in self.layers])

    @cached_property
    def alpha(self) -> np.ndarray:
        """Angular bin centre of each voxel, rad, shape (n_voxels,)."""
        return np.concatenate([np.repeat(l.alpha_mid, l.n_r) for l in self.layers])

    @cached_property
    def eta(self) -> np.ndarray:
        """Cartesian η-direction coordinate of each voxel centre, mm: r·cos α."""
        return self.r * np.cos(self.alpha)

    @cached_property
    def phi(self) -> np.ndarray:
        """Cartesian φ-direction coordinate of each voxel centre, mm: r·sin α."""
        return self.r * np.sin(self.alpha)

    # ----- helpers -------------------------------------------------------------------------
    def layer_energies(self, showers: np.ndarray) -> np.ndarray:
        """Sum voxel energies per layer: (N, n_voxels) MeV → (N, n_layers) MeV."""
        showers = np.asarray(showers)
        return np.stack([showers[:, s].sum(axis=1) for s in self.layer_slices], axis=1)

    def describe(self) -> str:
        rows = [f"{self.name} ({self.particle}): {self.n_voxels} voxels in {self.n_layers} layers"]
        for layer, s in zip(self.layers, self.layer_slices):
            rows.append(
                f"  layer {layer.id:>2}: n_r={layer.n_r:>2} n_alpha={layer.n_alpha:>2} "
                f"voxels {s.start}-{s.stop - 1}, r ≤ {layer.r_edges[-1]:g} mm"
            )
        return "\n".join(rows)

    @classmethod
    def from_xml(cls, path: str | os.PathLike[str], particle: str | None = None) -> Geometry:
        """Parse a CaloChallenge binning XML file.

        ``particle`` selects a ``<Bin name=...>`` element; by default the file's only one.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"{path}: geometry file not found; give 'photons', 'pions' or a CaloChallenge binning XML"
            )
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{path}: not a valid CaloChallenge binning XML ({exc})") from None
        bins = [b for b in root.iter("Bin")]
        if particle is not None:
            bins = [b for b in bins if b.attrib.get("name") == particle]
        if len(bins) != 1:
            names = [b.attrib.get("name") for b in root.iter("Bin")]
            raise DataError(
                f"{path}: expected exactly one <Bin> element"
                + (f" named {particle!r}" if particle else "")
                + f", found {names}; pass the particle name to choose"
            )
        layers = []
        for elem in bins[0].iter("Layer"):
            try:
                edges = tuple(float(s) for s in elem.attrib["r_edges"].split(","))
                layer_id = int(elem.attrib["id"])
                n_alpha = int(elem.attrib.get("n_bin_alpha", "1"))
            except (KeyError, ValueError) as exc:
                raise DataError(
                    f"{path}: malformed <Layer> element {elem.attrib} ({exc})"
                ) from None
            if len(edges) > 1:
                layers.append(Layer(layer_id, edges, n_alpha))
        layers.sort(key=lambda l: l.id)
        return cls(
            name=str(path),
            particle=bins[0].attrib.get("name", "unknown"),
            layers=tuple(layers),
            source=str(path),
        )


# DS1 geometries (CaloChallenge 2022, ATLAS dataset 1), facts from the binning XML files.
_PHOTON_LAYERS = (
    Layer(0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1),
    Layer(1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10),
    Layer(
        2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400), 10
    ),
    Layer(3, (0, 50, 100, 200, 400, 600), 1),
    Layer(12, (0, 100, 200, 400, 1000, 2000), 1),
)
_PION_LAYERS = (
    Layer(0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1),
    Layer(1, (0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200), 10),
    Layer(2, (0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400), 10),
    Layer(3, (0, 50, 100, 200, 400, 600), 1),
    Layer(12, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000), 10),
    Layer(13, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000), 10),
    Layer(14, (0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000), 1),
)

BUILTIN_GEOMETRIES: dict[str, Geometry] = {
    "photons": Geometry("photons", "photon", _PHOTON_LAYERS),
    "pions": Geometry("pions", "pion", _PION_LAYERS),
}
_ALIASES = {"photon": "photons", "gamma": "photons", "pion": "pions", "pi": "pions"}


def load_geometry(spec: str | os.PathLike[str] | Geometry) -> Geometry:
    """Return a geometry by built-in name (``photons``, ``pions``), XML path, or pass one through."""
    if isinstance(spec, Geometry):
        return spec
    key = str(spec)
    name = _ALIASES.get(key.lower(), key.lower())
    if name in BUILTIN_GEOMETRIES:
        return BUILTIN_GEOMETRIES[name]
    if key.lower().endswith(".xml") or os.path.sep in key:
        return Geometry.from_xml(key)
    raise DataError(
        f"unknown geometry {key!r}: expected one of {sorted(BUILTIN_GEOMETRIES)} or a path to a CaloChallenge binning XML file"
    )


def geometry_for_voxel_count(n_voxels: int) -> Geometry | None:
    """The built-in geometry with ``n_voxels`` voxels, or ``None``."""
    for geom in BUILTIN_GEOMETRIES.values():
        if geom.n_voxels == n_voxels:
            return geom
    return None
