"""A trained model outside Python: ONNX export, an ONNX Runtime runner and the Geant4 side.

Public API::

    export_onnx(run_dir, out, which="best", opset=17) -> ExportSummary
    export_model(model, out, kind=..., config=..., checkpoint=..., opset=17) -> ExportSummary
    OnnxShowerModel(path, geometry=None, threads=None): .run(e, noise), .generate(e, seed),
        .check_geometry(g), .metadata, .noise_contract
    parity_error(candidate, reference) -> float
    RealPairCircuit, prepare_for_export (circuits as real tensor operations)
    voxel_centres(geometry, layer_depths_mm) -> (V, 3) mm; energy_deposits(showers, centres)
    (qcalo.export.geant4; there too run_geant4_photons(model, energies, n, seed): the model
    inside Geant4 from Python, geant4_pybind imported only then)

See docs/export.md.
"""

from qcalo.export.circuits import RealPairCircuit, prepare_for_export
from qcalo.export.onnx_export import (
    DEFAULT_OPSET,
    PARITY_TOLERANCE,
    ExportError,
    ExportSummary,
    OnnxShowerModel,
    export_model,
    export_onnx,
    parity_error,
)

__all__ = [
    "DEFAULT_OPSET",
    "PARITY_TOLERANCE",
    "ExportError",
    "ExportSummary",
    "OnnxShowerModel",
    "RealPairCircuit",
    "export_model",
    "export_onnx",
    "parity_error",
    "prepare_for_export",
]
