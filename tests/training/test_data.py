"""Train/validation split, reproducible shuffles, streaming equals in-memory, RNG capture."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from qcalo.data.geometry import load_geometry
from qcalo.data.io import read_showers
from qcalo.errors import ConfigError
from qcalo.training import ShowerDataset, load_checkpoint, save_checkpoint, split_indices
from qcalo.training.checkpoint import capture_rng_state, restore_rng_state

PHOTONS = load_geometry("photons")


def test_split_is_a_seeded_partition() -> None:
    train, val = split_indices(1000, 0.2, seed=5)
    assert len(val) == 200 and len(train) == 800
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    again_train, again_val = split_indices(1000, 0.2, seed=5)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, split_indices(1000, 0.2, seed=6)[1])
    with pytest.raises(ConfigError, match="leaves no training events"):
        split_indices(1, 0.5, seed=0)


def _event_keys(energies: torch.Tensor, showers: torch.Tensor) -> list[tuple[float, float]]:
    # (E_inc, E_tot) identifies an event of a continuous-valued file.
    return sorted(zip(energies.tolist(), showers.sum(dim=1).tolist()))


def test_streamed_epochs_visit_the_same_training_events_as_in_memory(train_file: Path) -> None:
    memory = ShowerDataset(train_file, PHOTONS, validation_fraction=0.25, seed=1)
    streamed = ShowerDataset(
        train_file,
        PHOTONS,
        validation_fraction=0.25,
        seed=1,
        max_in_memory_mb=1e-3,
        chunk_events=130,
        shuffle_window=3,
    )
    assert memory.in_memory and not streamed.in_memory
    data = read_showers(train_file, dtype=np.float32)
    expected = _event_keys(
        torch.from_numpy(data.incident_energies[memory.train_indices]),
        torch.from_numpy(data.showers[memory.train_indices]),
    )

    for dataset in (memory, streamed):
        batches = list(dataset.train_batches(epoch=0, batch_size=128))
        assert all(len(e) == 128 for e, _ in batches[:-1])
        energies = torch.cat([e for e, _ in batches])
        showers = torch.cat([x for _, x in batches])
        assert _event_keys(energies, showers) == expected
        # Same (seed, epoch) -> the same order; another epoch -> another order.
        again = torch.cat([e for e, _ in dataset.train_batches(epoch=0, batch_size=128)])
        other = torch.cat([e for e, _ in dataset.train_batches(epoch=1, batch_size=128)])
        assert torch.equal(energies, again) and not torch.equal(energies, other)

    val_memory = torch.cat([x for _, x in memory.validation_batches(100)])
    val_stream = torch.cat([x for _, x in streamed.validation_batches(100)])
    assert torch.equal(val_memory, val_stream)
    assert torch.equal(val_memory, torch.from_numpy(data.showers[memory.val_indices]))

    chunks_memory = list(memory.train_chunks())
    chunks_stream = list(streamed.train_chunks())
    assert np.array_equal(
        np.concatenate([c.showers for c in chunks_memory]),
        np.concatenate([c.showers for c in chunks_stream]),
    )


def test_dataset_rejects_a_file_of_the_wrong_geometry(train_file: Path) -> None:
    from qcalo.errors import DataError

    with pytest.raises(DataError, match="geometry 'pions' expects 533"):
        ShowerDataset(train_file, load_geometry("pions"), validation_fraction=0.2, seed=0)


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leave a cached Gaussian in NumPy's legacy state
    state = capture_rng_state()
    path = save_checkpoint(tmp_path / "ckpt.pt", {"format": 1, "rng": state})
    expected = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    restore_rng_state(load_checkpoint(path)["rng"])
    again = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    assert expected[:3] == again[:3]
    assert torch.equal(expected[3], again[3])


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    from qcalo.errors import DataError

    with pytest.raises(DataError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot be read as a qcalo checkpoint"):
        load_checkpoint(junk)
