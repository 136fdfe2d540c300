"""`qcalo info` / `qcalo features` and the streamed file summary behind them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from qcalo.cli.main import main
from qcalo.data.features import (
    classifier_column_names,
    classifier_columns,
    compute_features,
    write_features,
)
from qcalo.data.geometry import load_geometry
from qcalo.data.io import write_showers
from qcalo.data.summary import file_info, format_file_info
from qcalo.errors import DataError

PHOTONS = load_geometry("photons")


@pytest.fixture()
def small_file(tmp_path):
    rng = np.random.default_rng(2)
    e_inc = np.array([256.0, 256.0, 256.0, 1024.0, 1024.0, 4096.0, 256.0])
    showers = rng.exponential(3.0, (7, 368)) * (rng.random((7, 368)) < 0.3)
    showers[6] = 0.0  # an empty shower
    path = write_showers(tmp_path / "small.h5", e_inc, showers, dtype=np.float32)
    return path, e_inc, showers.astype(np.float32).astype(np.float64)


def test_file_info_matches_direct_computation(small_file):
    path, e_inc, showers = small_file
    info = file_info(path, chunk_size=2)  # several chunks: the running merges are exercised
    assert info["n_events"] == 7 and info["n_voxels"] == 368 and info["dtype"] == "float32"
    assert info["geometry"] == "photons"  # found by voxel count
    assert (info["e_inc_min"], info["e_inc_max"]) == (256.0, 4096.0)
    assert info["n_distinct_energies"] == 3
    assert info["energy_counts"] == {256.0: 4, 1024.0: 2, 4096.0: 1}
    ratio = showers.sum(axis=1) / e_inc
    assert info["e_ratio_mean"] == pytest.approx(ratio.mean(), rel=1e-12)
    assert info["e_ratio_std"] == pytest.approx(ratio.std(), rel=1e-12)
    assert info["zero_voxel_fraction"] == pytest.approx(np.mean(showers == 0))
    assert info["below_threshold_fraction"] == pytest.approx(np.mean(showers < 1.0))
    assert info["n_empty_showers"] == 1
    layers = PHOTONS.layer_energies(showers[:6]) / showers[:6].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(info["layer_energy_fraction_mean"], layers.mean(axis=0), rtol=1e-12)
    assert info["layer_ids"] == [0, 1, 2, 3, 12]
    json.dumps(info)  # plain types only
    text = format_file_info(info)
    assert "events:             7" in text and "368 (photons)" in text and "1.024 GeV: 2" in text


def test_file_info_many_energies_and_unknown_geometry(tmp_path):
    rng = np.random.default_rng(4)
    e_inc = rng.uniform(100, 1000, 45)
    path = write_showers(tmp_path / "cont.h5", e_inc, rng.random((45, 10)))
    info = file_info(path, chunk_size=8)
    assert info["n_distinct_energies"] == 45 and info["energy_counts"] is None
    assert info["geometry"] is None and info["layer_energy_fraction_mean"] is None
    assert "no built-in geometry" in format_file_info(info)
    with pytest.raises(DataError, match="10 voxels per event; geometry 'pions' expects 533"):
        file_info(path, "pions")


def test_file_info_on_the_g4_reference(g4_photons_path):
    info = file_info(g4_photons_path)
    assert info["n_events"] == 40_500 and info["geometry"] == "photons"
    assert info["energy_counts"] == {float(2**k): 4500 for k in range(8, 17)}
    assert 0.9 < info["e_ratio_mean"] < 1.05
    assert sum(info["layer_energy_fraction_mean"]) == pytest.approx(1.0)


def test_cli_info(small_file, capsys):
    path, _, _ = small_file
    assert main(["info", str(path), "--geometry", "photons"]) == 0
    out = capsys.readouterr().out
    assert "E_tot / E_inc:" in out and "layer 12:" in out
    assert main(["info", "-q", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_events"] == 7


def test_cli_errors_are_one_line_and_exit_2(tmp_path, small_file, capsys):
    path, _, _ = small_file
    assert main(["info", str(tmp_path / "absent.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("qcalo info: error:")
        and "absent.h5: file not found" in err
        and "\n" not in err
    )
    assert (
        main(["features", str(path), "--geometry", "pions", "--out", str(tmp_path / "f.npz")]) == 2
    )
    assert "expects 533" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize("name", ["features.npz", "features.dat"])
def test_cli_features_writes_exactly_the_named_file(small_file, tmp_path, name):
    path, e_inc, showers = small_file
    out_dir = tmp_path / "out"
    assert (
        main(["features", "-q", str(path), "--out", str(out_dir / name), "--threshold", "0.5"]) == 0
    )
    assert sorted(os.listdir(out_dir)) == [name]  # no ".npz" appended, no temp file left
    with np.load(out_dir / name) as data:
        expected = classifier_columns(
            compute_features(e_inc, showers, PHOTONS, threshold_mev=0.5), PHOTONS
        )
        # The CLI streams the file in chunks; BLAS results may differ in the last bit by row count.
        np.testing.assert_allclose(data["features"], expected, rtol=1e-12, atol=1e-9)
        assert list(data["names"]) == classifier_column_names(PHOTONS)
        assert float(data["threshold_mev"]) == 0.5 and str(data["geometry"]) == "photons"


def test_write_features_needs_a_geometry_for_unknown_voxel_counts(tmp_path):
    path = write_showers(tmp_path / "odd.h5", np.ones(3), np.ones((3, 12)))
    with pytest.raises(DataError, match="no built-in geometry has 12 voxels"):
        write_features(path, tmp_path / "x.npz")
