"""The ``qcalo`` command-line verbs as Python functions.

Each function here is the one the CLI subcommand of the same name calls; arguments mirror the
CLI options (energies in MeV, paths as ``str`` or ``pathlib.Path``). Imports are lazy so that
``import qcalo.api`` stays cheap.

Example::

    from qcalo import api
    api.simulate_to_file("ref.h5", "photon", [1024, 65536], events_per_energy=500, seed=1)
    run = api.train("tiny_photons", "ref.h5", "runs/tiny", seed=1)  # or ["a.h5", "b.h5"]: one data set
    api.generate(run, "gen.h5", energies_from="ref.h5", seed=2)
    metrics = api.evaluate("gen.h5", "ref.h5", "photons", "eval/", metrics="hist,cls-high,fpd,kpd")
"""

from __future__ import annotations

from typing import Any

# verb -> (module, attribute)
_VERBS: dict[str, tuple[str, str]] = {
    "simulate": ("qcalo.data.simulation", "simulate"),
    "simulate_to_file": ("qcalo.data.simulation", "simulate_to_file"),
    "file_info": ("qcalo.data.summary", "file_info"),
    "compute_features": ("qcalo.data.features", "compute_features"),
    "features_from_file": ("qcalo.data.features", "features_from_file"),
    "write_features": ("qcalo.data.features", "write_features"),
    "read_showers": ("qcalo.data.io", "read_showers"),
    "write_showers": ("qcalo.data.io", "write_showers"),
    "load_geometry": ("qcalo.data.geometry", "load_geometry"),
    "train": ("qcalo.training", "train"),
    "load_run": ("qcalo.training", "load_run"),
    "load_config": ("qcalo.training", "load_config"),
    "config_path": ("qcalo.training", "config_path"),
    "generate": ("qcalo.generation", "generate"),
    "export_onnx": ("qcalo.export", "export_onnx"),
    "evaluate": ("qcalo.pipeline", "evaluate"),
    "make_report": ("qcalo.evaluation", "make_report"),
    "demo": ("qcalo.pipeline", "demo"),
    "bench_circuits": ("qcalo.quantum.bench", "bench_circuits"),
    "download_dataset": ("qcalo.data.download", "download_dataset"),
    "load_study": ("qcalo.studies", "load_study"),
    "run_study": ("qcalo.studies", "run_study"),
    "collect_study": ("qcalo.studies", "collect"),
    "write_condor": ("qcalo.studies", "write_condor"),
}

__all__ = sorted(_VERBS)


def __getattr__(name: str) -> Any:
    if name not in _VERBS:
        raise AttributeError(f"module 'qcalo.api' has no attribute {name!r}")
    import importlib

    module, attr = _VERBS[name]
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return __all__
