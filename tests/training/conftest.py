"""Fixtures for the training tests: a small shower file and one tiny trained run, shared per session."""

from __future__ import annotations

from pathlib import Path

import pytest

N_EVENTS = 2000
ENERGIES_MEV = (256.0, 1024.0, 4096.0, 16384.0)


@pytest.fixture(scope="session")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2000 photon showers (MeV) from the built-in simulator, 500 at each of 4 energies."""
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("data") / "train.h5"
    simulate_to_file(path, "photons", list(ENERGIES_MEV), N_EVENTS // len(ENERGIES_MEV), seed=7)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, train_file: Path) -> Path:
    """The shipped tiny config trained for its 3 epochs (seed 3) on ``train_file``."""
    from qcalo.training import train

    return train(
        "tiny_photons",
        train_file,
        tmp_path_factory.mktemp("runs") / "tiny",
        seed=3,
        epochs=3,
        device="cpu",
    )
