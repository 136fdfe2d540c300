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


@pytest.fixture
def script_validation(monkeypatch: pytest.MonkeyPatch):
    """A function that makes the trainer's validation return the given NLLs in turn (one per
    epoch), so early stopping and the best-checkpoint rule are tested without training to a
    given NLL."""
    import qcalo.training.trainer as trainer

    def apply(val_nlls: list[float]) -> None:
        scripted = iter(val_nlls)
        monkeypatch.setattr(
            trainer,
            "_validate",
            lambda *a, **k: {
                "val_nll": next(scripted),
                "val_nll_stage1": 0.0,
                "val_nll_stage2": 0.0,
                "val_excluded": 0.0,
            },
        )

    return apply
