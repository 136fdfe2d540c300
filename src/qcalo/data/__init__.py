"""Data layer: CaloChallenge files, geometry, features, the reference simulator, preprocessing."""

from qcalo.data.geometry import BUILTIN_GEOMETRIES, Geometry, Layer, load_geometry
from qcalo.data.io import ShowerData, ShowerWriter, inspect_file, iter_showers, read_showers, write_showers

__all__ = [
    "BUILTIN_GEOMETRIES", "Geometry", "Layer", "load_geometry",
    "ShowerData", "ShowerWriter", "inspect_file", "iter_showers", "read_showers", "write_showers",
]
