"""Data layer: CaloChallenge files, geometry, features, the reference simulator, preprocessing."""

from qcalo.data.features import (
    ShowerFeatures,
    classifier_column_names,
    classifier_columns,
    compute_features,
    features_from_file,
)
from qcalo.data.geometry import BUILTIN_GEOMETRIES, Geometry, Layer, load_geometry
from qcalo.data.io import (
    ShowerData,
    ShowerWriter,
    inspect_file,
    iter_showers,
    read_showers,
    write_showers,
)
from qcalo.data.split import ShowerSplit, holdout_indices, split_showers
from qcalo.data.summary import file_info

__all__ = [
    "BUILTIN_GEOMETRIES",
    "Geometry",
    "Layer",
    "load_geometry",
    "ShowerData",
    "ShowerWriter",
    "inspect_file",
    "iter_showers",
    "read_showers",
    "write_showers",
    "ShowerSplit",
    "holdout_indices",
    "split_showers",
    "ShowerFeatures",
    "compute_features",
    "classifier_columns",
    "classifier_column_names",
    "features_from_file",
    "file_info",
]
