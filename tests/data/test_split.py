"""The seeded held-out split (qcalo.data.split): the rule benchmarks/quality_g4.py and studies'
``data: {holdout: ...}`` share, checked on tiny files against a hand-written permutation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from qcalo.data import holdout_indices, read_showers, split_showers, write_showers
from qcalo.data.split import drop_energies
from qcalo.errors import DataError


def _numbered(path: Path, n: int, n_voxels: int = 368, dtype: type = np.float64) -> Path:
    """A file whose event i has incident energy 1000 + i MeV and i in its first voxel."""
    showers = np.zeros((n, n_voxels))
    showers[:, 0] = np.arange(n)
    showers[:, 1] = 0.125  # exact in float32 too
    return write_showers(path, 1000.0 + np.arange(n), showers, dtype=dtype)


def _events(path: Path) -> list[int]:
    return [int(e) - 1000 for e in read_showers(path).incident_energies]


def test_indices_follow_the_seeded_permutation_by_hand():
    # np.random.default_rng(0).permutation(10) == [4 6 2 7 3 5 9 0 8 1]; 0.2 * 10 = 2 held out.
    train, heldout = holdout_indices(10, 0.2, 0)
    assert heldout.tolist() == [4, 6]
    assert train.tolist() == [0, 1, 2, 3, 5, 7, 8, 9]
    assert train.dtype == heldout.dtype == np.int64
    # default_rng(7).permutation(12) == [4 6 10 0 1 3 8 7 2 5 9 11]; round(0.3 * 12) = 4.
    train, heldout = holdout_indices(12, 0.3, 7)
    assert heldout.tolist() == [0, 4, 6, 10]
    assert train.tolist() == [1, 2, 3, 5, 7, 8, 9, 11]


@pytest.mark.parametrize(("n", "fraction", "seed"), [(10, 0.2, 0), (101, 0.5, 3), (7, 0.9, 11)])
def test_indices_are_disjoint_cover_everything_and_have_the_rounded_size(n, fraction, seed):
    train, heldout = holdout_indices(n, fraction, seed)
    assert len(heldout) == int(round(fraction * n)) and len(train) == n - len(heldout)
    assert not set(train.tolist()) & set(heldout.tolist())
    assert sorted(np.concatenate([train, heldout]).tolist()) == list(range(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(heldout) > 0)
    again = holdout_indices(n, fraction, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], heldout)


def test_split_file_is_the_hand_computed_split_with_the_benchmark_dtypes(tmp_path):
    source = _numbered(tmp_path / "source.h5", 10, dtype=np.float32)
    result = split_showers(source, 0.2, 0, tmp_path / "train.h5", tmp_path / "held.h5")
    assert (result.n_train, result.n_heldout) == (8, 2)
    assert (result.train, result.heldout) == (tmp_path / "train.h5", tmp_path / "held.h5")
    assert _events(result.heldout) == [4, 6]
    assert _events(result.train) == [0, 1, 2, 3, 5, 7, 8, 9]
    with h5py.File(result.train) as f:
        assert f["showers"].dtype == np.float32 and f["incident_energies"].shape == (8, 1)
    with h5py.File(result.heldout) as f:
        assert f["showers"].dtype == np.float64 and f["incident_energies"].shape == (2, 1)
    whole = read_showers(source)
    part = read_showers(result.heldout)
    assert np.array_equal(part.showers, whole.showers[[4, 6]])
    assert np.array_equal(part.incident_energies, whole.incident_energies[[4, 6]])


def test_split_is_deterministic_disjoint_and_chunk_independent(tmp_path):
    source = _numbered(tmp_path / "source.h5", 53, n_voxels=5)
    a = split_showers(source, 0.25, 5, tmp_path / "a_train.h5", tmp_path / "a_held.h5")
    b = split_showers(
        source, 0.25, 5, tmp_path / "b_train.h5", tmp_path / "b_held.h5", chunk_size=4
    )
    assert (a.n_train, a.n_heldout) == (40, 13)
    for x, y in ((a.train, b.train), (a.heldout, b.heldout)):
        dx, dy = read_showers(x), read_showers(y)
        assert np.array_equal(dx.showers, dy.showers)
        assert np.array_equal(dx.incident_energies, dy.incident_energies)
    train, held = _events(a.train), _events(a.heldout)
    assert not set(train) & set(held) and sorted(train + held) == list(range(53))
    assert held == holdout_indices(53, 0.25, 5)[1].tolist()
    other = split_showers(source, 0.25, 6, tmp_path / "c_train.h5", tmp_path / "c_held.h5")
    assert _events(other.heldout) != held


def test_bad_fractions_and_empty_sides_are_refused(tmp_path):
    source = _numbered(tmp_path / "source.h5", 3, n_voxels=4)
    for fraction in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            holdout_indices(3, fraction, 0)
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            split_showers(source, fraction, 0, tmp_path / "t.h5", tmp_path / "h.h5")
    with pytest.raises(DataError, match=r"3 events split 3 / 0.*at least one event"):
        split_showers(source, 0.1, 0, tmp_path / "t.h5", tmp_path / "h.h5")
    with pytest.raises(DataError, match="geometry 'photons' expects 368"):
        split_showers(source, 0.5, 0, tmp_path / "t.h5", tmp_path / "h.h5", geometry="photons")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.h5"]


def test_held_out_energies_go_whole_to_the_held_out_side_and_the_rest_splits_by_the_rule():
    # Events 0..9; 3, 5 and 8 are at 2048 MeV (held out as an energy). The other seven split by
    # the plain rule on their own: default_rng(0).permutation(7) == [2 4 3 6 5 0 1] (numpy's
    # PCG64), round(0.3 * 7) = 2 held out: positions 2 and 4 of [0 1 2 4 6 7 9] = events 2, 6.
    energies = np.full(10, 1024.0)
    energies[[3, 5, 8]] = 2048.0 * (1 + 2e-6)  # float32 round-off still matches
    assert np.random.default_rng(0).permutation(7).tolist() == [2, 4, 3, 6, 5, 0, 1]
    train, held = holdout_indices(10, 0.3, 0, incident_energies=energies, heldout_energies=[2048.0])
    assert held.tolist() == [2, 3, 5, 6, 8]
    assert train.tolist() == [0, 1, 4, 7, 9]
    # Without held-out energies the split is the plain one, unchanged.
    plain = holdout_indices(10, 0.3, 0)
    same = holdout_indices(10, 0.3, 0, incident_energies=energies, heldout_energies=[])
    assert all((a == b).all() for a, b in zip(plain, same, strict=True))


def test_split_and_drop_energies_write_files_without_the_held_out_energies(tmp_path: Path):
    energies = np.repeat([1024.0, 2048.0, 4096.0], 4)
    showers = np.zeros((12, 368))
    showers[:, 0] = np.arange(12)
    source = write_showers(tmp_path / "s.h5", energies, showers)
    split = split_showers(
        source, 0.25, 1, tmp_path / "t.h5", tmp_path / "r.h5", heldout_energies=[2048.0]
    )
    train, held = read_showers(split.train), read_showers(split.heldout)
    assert 2048.0 not in set(train.incident_energies.tolist())
    assert sorted(held.showers[held.incident_energies == 2048.0, 0].tolist()) == [4, 5, 6, 7]
    assert split.n_train + split.n_heldout == 12 and split.n_heldout == 4 + 2  # round(0.25 * 8)
    n = drop_energies(source, tmp_path / "d.h5", [1024.0, 4096.0])
    dropped = read_showers(tmp_path / "d.h5")
    assert n == 4 and dropped.showers[:, 0].tolist() == [4, 5, 6, 7]
    with pytest.raises(DataError, match=r"no event has the held-out incident energy 3000 MeV"):
        split_showers(
            source, 0.25, 1, tmp_path / "t2.h5", tmp_path / "r2.h5", heldout_energies=[3000]
        )
    assert not (tmp_path / "t2.h5").exists() and not (tmp_path / "r2.h5").exists()
    with pytest.raises(DataError, match="nothing is left to train on"):
        drop_energies(source, tmp_path / "d2.h5", [1024.0, 2048.0, 4096.0])
