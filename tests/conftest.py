"""Shared fixtures. Tests run with one torch thread per worker (see Makefile) for stable CI time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("QCALO_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
# CI clones main with ../shared beside it; developers' checkouts have it in the same place.
SHARED = Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared"))
# CI sets QCALO_REQUIRE_SHARED=1: there a missing shared file is a failure, not a silent skip.
REQUIRE_SHARED = os.environ.get("QCALO_REQUIRE_SHARED", "") not in ("", "0")


def _missing(what: str) -> None:
    """Skip the test for a developer without ../shared; fail it where CI requires the data."""
    if REQUIRE_SHARED:
        pytest.fail(f"{what} (QCALO_REQUIRE_SHARED is set, so CI must have it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        _missing(f"shared data folder {SHARED} not present (set QCALO_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def g4_photons_path(shared_dir: Path) -> Path:
    """The Geant4 photon development reference (40,500 showers, 2^8..2^16 MeV)."""
    path = shared_dir / "data" / "g4_photons_dev.h5"
    if not path.is_file():
        _missing(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def ds1_xml(shared_dir: Path) -> dict[str, Path]:
    """The CaloChallenge DS1 binning XML files by particle ('photons', 'pions')."""
    paths = {
        p: shared_dir / "calochallenge" / f"binning_dataset_1_{p}.xml" for p in ("photons", "pions")
    }
    for path in paths.values():
        if not path.is_file():
            _missing(f"{path} not present")
    return paths


@pytest.fixture(scope="session")
def parameter_counts():
    """``counts(config)``: a run config's (RunConfig, or a shipped name / YAML path) model
    parameter counts, built on preprocessing fitted to three dummy showers (the counts do not
    depend on the data)."""
    import numpy as np

    from qcalo.data.geometry import load_geometry
    from qcalo.data.io import ShowerData
    from qcalo.models.registry import model_kind
    from qcalo.training import load_config

    def counts(config) -> dict[str, int]:
        cfg = config if hasattr(config, "model") else load_config(config)
        geometry = load_geometry(cfg.geometry)
        e_inc = np.array([256.0, 4096.0, 65536.0])
        showers = np.random.default_rng(0).exponential(1.0, (3, geometry.n_voxels))
        data = ShowerData(e_inc, showers * e_inc[:, None] / geometry.n_voxels)
        kind = model_kind(cfg.model)
        stats = kind.fit(lambda: [data], geometry, cfg.model)
        return kind.build(cfg.model, geometry, stats).parameter_counts()

    return counts
