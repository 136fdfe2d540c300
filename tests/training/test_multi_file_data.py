"""Several training files read as one data set (issue 9, item 3).

The global event index runs over the first file, then the second; the seeded split is drawn
over it, in-memory and streamed epochs visit the same events, chunks never span two files, and
one file gives exactly the split and batches it gave before several files were possible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from qcalo.data.geometry import load_geometry
from qcalo.data.io import read_showers, write_showers
from qcalo.errors import ConfigError, DataError
from qcalo.training import ShowerDataset, load_checkpoint, load_config, split_indices, train
from qcalo.training.config import config_from_dict

PHOTONS = load_geometry("photons")
N_A, N_B = 120, 90  # events of the two files
STREAM = {"max_in_memory_mb": 1e-4, "chunk_events": 32, "shuffle_window": 2}


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small photon files (MeV) from the built-in simulator: 120 and 90 showers."""
    from qcalo.data.simulation import simulate_to_file

    folder = tmp_path_factory.mktemp("multi")
    a = simulate_to_file(folder / "a.h5", "photons", [512.0, 4096.0], N_A // 2, seed=1)
    b = simulate_to_file(folder / "b.h5", "photons", [1024.0, 16384.0], N_B // 2, seed=2)
    return a, b


def _all_events(*paths: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 events of the files in order: E_inc (N,) MeV, showers (N, 368) MeV."""
    parts = [read_showers(p, dtype=np.float32) for p in paths]
    return (
        torch.from_numpy(np.concatenate([d.incident_energies for d in parts])),
        torch.from_numpy(np.concatenate([d.showers for d in parts])),
    )


def _ids(energies: torch.Tensor, showers: torch.Tensor, lookup: dict[bytes, int]) -> list[int]:
    """The global index of every event of a batch, found by its exact float32 bytes."""
    return [
        lookup[e.numpy().tobytes() + x.numpy().tobytes()]
        for e, x in zip(energies, showers, strict=True)
    ]


def _lookup(energies: torch.Tensor, showers: torch.Tensor) -> dict[bytes, int]:
    table = {
        e.numpy().tobytes() + x.numpy().tobytes(): i
        for i, (e, x) in enumerate(zip(energies, showers))
    }
    assert len(table) == len(energies)  # every event is distinguishable
    return table


def _epoch_ids(
    dataset: ShowerDataset, epoch: int, lookup: dict[bytes, int], batch: int = 50
) -> list[int]:
    return [i for e, x in dataset.train_batches(epoch, batch) for i in _ids(e, x, lookup)]


def test_split_draws_validation_from_every_file_and_partitions_all_events(
    two_files: tuple[Path, Path],
) -> None:
    a, b = two_files
    dataset = ShowerDataset([a, b], PHOTONS, validation_fraction=0.25, seed=3)
    assert dataset.n_events == N_A + N_B and dataset.file_events == [N_A, N_B]
    assert dataset.file_offsets.tolist() == [0, N_A, N_A + N_B]
    # The split is the seeded split of the global index.
    train_idx, val_idx = split_indices(N_A + N_B, 0.25, seed=3)
    assert np.array_equal(dataset.train_indices, train_idx)
    assert np.array_equal(dataset.val_indices, val_idx)
    assert (val_idx < N_A).any() and (val_idx >= N_A).any()
    assert (train_idx < N_A).any() and (train_idx >= N_A).any()

    energies, showers = _all_events(a, b)
    lookup = _lookup(energies, showers)
    seen_train = _epoch_ids(dataset, 0, lookup)
    seen_val = [i for e, x in dataset.validation_batches(40) for i in _ids(e, x, lookup)]
    assert sorted(seen_train) == train_idx.tolist() and seen_val == val_idx.tolist()
    # train ∪ validation = every event of both files, each exactly once.
    assert sorted(seen_train + seen_val) == list(range(N_A + N_B))


def test_streamed_epochs_equal_in_memory_ones_and_chunks_stay_inside_one_file(
    two_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_files
    memory = ShowerDataset([a, b], PHOTONS, validation_fraction=0.2, seed=5)
    streamed = ShowerDataset([a, b], PHOTONS, validation_fraction=0.2, seed=5, **STREAM)
    assert memory.in_memory and not streamed.in_memory
    energies, showers = _all_events(a, b)
    lookup = _lookup(energies, showers)

    reads: list[tuple[int, int]] = []
    read_chunk = ShowerDataset._read_chunk

    def recording(self: ShowerDataset, lo: int, hi: int):  # type: ignore[no-untyped-def]
        reads.append((lo, hi))
        return read_chunk(self, lo, hi)

    monkeypatch.setattr(ShowerDataset, "_read_chunk", recording)
    for epoch in (0, 1):
        in_memory_ids = _epoch_ids(memory, epoch, lookup)
        streamed_ids = _epoch_ids(streamed, epoch, lookup)
        assert sorted(in_memory_ids) == sorted(streamed_ids) == memory.train_indices.tolist()
        # The batches of an epoch are a function of (seed, epoch) only: a fresh dataset, the same.
        fresh = ShowerDataset([a, b], PHOTONS, validation_fraction=0.2, seed=5, **STREAM)
        assert _epoch_ids(fresh, epoch, lookup) == streamed_ids
    assert _epoch_ids(streamed, 0, lookup) != _epoch_ids(streamed, 1, lookup)
    # Memory stays bounded: every read is at most chunk_events events of a single file.
    assert reads and all(hi - lo <= STREAM["chunk_events"] for lo, hi in reads)
    assert all(hi <= N_A or lo >= N_A for lo, hi in reads)
    assert {lo for lo, _ in reads} >= {0, N_A}  # both files' first chunks were read

    val_memory = torch.cat([x for _, x in memory.validation_batches(30)])
    val_stream = torch.cat([x for _, x in streamed.validation_batches(30)])
    assert torch.equal(val_memory, val_stream)
    assert torch.equal(val_memory, showers[memory.val_indices])
    stats_memory = np.concatenate([c.showers for c in memory.train_chunks()])
    stats_stream = np.concatenate([c.showers for c in streamed.train_chunks()])
    assert np.array_equal(stats_memory, stats_stream)
    assert np.array_equal(stats_memory, showers[memory.train_indices].double().numpy())


def _legacy_streamed_batches(
    n_events: int, train: np.ndarray, seed: int, epoch: int, chunk: int, window: int, batch: int
) -> list[np.ndarray]:
    """The event indices of every batch of the one-file streaming shuffle as written before
    several files were possible (chunk starts permuted, windows shuffled, carried remainder)."""
    rng = np.random.default_rng([seed, 0x5EED, epoch])
    member = np.zeros(n_events, dtype=bool)
    member[train] = True
    starts = rng.permutation(np.arange(0, n_events, chunk))
    carry = np.zeros(0, dtype=np.int64)
    batches: list[np.ndarray] = []
    for w in range(0, len(starts), window):
        parts = [carry]
        for lo in starts[w : w + window]:
            keep = np.flatnonzero(member[lo : min(lo + chunk, n_events)])
            if len(keep):
                parts.append(lo + keep)
        ids = np.concatenate(parts)
        ids = ids[rng.permutation(len(ids))]
        n_full = len(ids) // batch * batch
        batches += [ids[i : i + batch] for i in range(0, n_full, batch)]
        carry = ids[n_full:]
    if len(carry):
        batches.append(carry)
    return batches


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_one_file_gives_the_split_and_batches_it_always_gave(
    two_files: tuple[Path, Path], streamed: bool
) -> None:
    a, _ = two_files
    options = STREAM if streamed else {}
    plain = ShowerDataset(a, PHOTONS, validation_fraction=0.2, seed=11, **options)
    listed = ShowerDataset([a], PHOTONS, validation_fraction=0.2, seed=11, **options)
    train_idx, val_idx = split_indices(N_A, 0.2, seed=11)
    energies, showers = _all_events(a)
    for dataset in (plain, listed):
        assert dataset.in_memory is not streamed
        assert np.array_equal(dataset.train_indices, train_idx)
        assert np.array_equal(dataset.val_indices, val_idx)
        for epoch in (0, 3):
            if streamed:
                expected = _legacy_streamed_batches(
                    N_A, train_idx, 11, epoch, STREAM["chunk_events"], STREAM["shuffle_window"], 50
                )
            else:
                order = dataset.epoch_rng(epoch).permutation(train_idx)
                expected = [order[i : i + 50] for i in range(0, len(order), 50)]
            got = list(dataset.train_batches(epoch, 50))
            assert len(got) == len(expected)
            for (e, x), ids in zip(got, expected, strict=True):
                assert torch.equal(e, energies[ids]) and torch.equal(x, showers[ids])


def test_files_of_another_geometry_or_listed_twice_are_refused(
    two_files: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_files
    rng = np.random.default_rng(0)
    pions = write_showers(tmp_path / "pions.h5", np.full(4, 2048.0), rng.exponential(1.0, (4, 533)))
    with pytest.raises(
        DataError, match=r"pions\.h5: showers have 533 voxels per event but .*a\.h5 has 368"
    ):
        ShowerDataset([a, pions], PHOTONS, validation_fraction=0.2, seed=0)
    # Both of another geometry than the config's: the file-versus-geometry message.
    other = write_showers(tmp_path / "pions2.h5", np.full(3, 512.0), rng.exponential(1.0, (3, 533)))
    with pytest.raises(DataError, match="geometry 'photons' expects 368"):
        ShowerDataset([pions, other], PHOTONS, validation_fraction=0.2, seed=0)
    twin = tmp_path / "twin.h5"
    twin.symlink_to(b)
    with pytest.raises(DataError, match="listed twice in the training data"):
        ShowerDataset([a, b, twin], PHOTONS, validation_fraction=0.2, seed=0)
    with pytest.raises(ConfigError, match="empty list of files"):
        ShowerDataset([], PHOTONS, validation_fraction=0.2, seed=0)


def test_config_takes_a_list_of_files_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "run.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": ["a.h5", "../b.h5", "/abs/c.h5"]}}))
    cfg = load_config(config)
    assert cfg.data.path == [
        str((tmp_path / "sub" / "a.h5").resolve()),
        str((tmp_path / "b.h5").resolve()),
        "/abs/c.h5",
    ]
    assert cfg.data.paths == cfg.data.path
    assert config_from_dict(cfg.to_dict()) == cfg  # round trip, e.g. through config.yaml
    # `data: [a, b]` is shorthand for `data: {path: [a, b]}`; a one-file list is the plain path.
    assert config_from_dict({"data": ["a.h5", "b.h5"]}).data.path == ["a.h5", "b.h5"]
    one = config_from_dict({"data": {"path": ["a.h5"]}})
    assert one.data.path == "a.h5" and one.to_dict() == config_from_dict({"data": "a.h5"}).to_dict()
    assert config_from_dict({}).data.paths == []
    for bad, message in (
        ([], "empty list of training files"),
        (["a.h5", "a.h5"], "listed twice"),
        (["a.h5", 3], "not a file path"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"data": {"path": bad}})


# A tiny model fitted on 168 events may put a validation event outside its support (warned).
@pytest.mark.filterwarnings("ignore:.*non-finite log-density:UserWarning")
def test_two_file_training_runs_records_its_files_and_resumes_only_with_them(
    two_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qcalo.training.trainer as trainer

    a, b = two_files
    cfg = config_from_dict(
        load_config("tiny_photons").to_dict() | {"device": "cpu", "seed": 4, "epochs": 2}
    )
    straight = train(cfg, [a, b], tmp_path / "straight")
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["data"] == [str(a.resolve()), str(b.resolve())]
    assert summary["n_train"] + summary["n_val"] == N_A + N_B and summary["epochs_run"] == 2
    saved = yaml.safe_load((straight / "config.yaml").read_text())
    assert saved["data"]["path"] == summary["data"]
    last = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert last["config"]["data"]["path"] == summary["data"]

    # Interrupted right after the first epoch's checkpoint, then resumed with the same files:
    # the same weights, bit for bit, as the uninterrupted run.
    save = trainer.save_checkpoint

    def save_then_stop(path: Path, checkpoint: dict) -> Path:  # type: ignore[type-arg]
        written = save(path, checkpoint)
        if Path(path).name == "last.pt" and checkpoint["epoch"] == 1:
            raise KeyboardInterrupt
        return written

    split = tmp_path / "split"
    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, [a, b], split)
    monkeypatch.undo()
    train(cfg, [str(a), str(b)], split, resume=True)
    resumed = load_checkpoint(split / "checkpoints" / "last.pt")
    assert resumed["epoch"] == 2
    assert all(torch.equal(last["model"][k], resumed["model"][k]) for k in last["model"])

    for other in ([a], [b, a]):
        with pytest.raises(ConfigError, match=r"differs in data\.path.*the run trained on --data"):
            train(cfg, other, split, resume=True)
