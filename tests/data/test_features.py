"""CaloChallenge high-level features: hand-worked showers, an independent per-layer
reference computation, and the Geant4 development file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcalo.data.features import (
    ShowerFeatures,
    classifier_column_names,
    classifier_columns,
    compute_features,
    features_from_file,
    iter_features,
)
from qcalo.data.geometry import load_geometry
from qcalo.data.io import read_showers, write_showers
from qcalo.errors import ConfigError, DataError

PHOTONS = load_geometry("photons")
PIONS = load_geometry("pions")


def _empty(n_events: int = 1, geometry=PHOTONS) -> np.ndarray:
    return np.zeros((n_events, geometry.n_voxels))


def _voxel(layer: int, alpha_bin: int, r_bin: int, geometry=PHOTONS) -> int:
    """Index of a voxel: layer offset + alpha_bin * n_r + r_bin (CaloChallenge order)."""
    return geometry.layer_slices[layer].start + alpha_bin * geometry.layers[layer].n_r + r_bin


# ----- hand-worked showers ------------------------------------------------------------------
def test_one_voxel_shower_sits_at_that_voxel_centre():
    showers = _empty()
    # Photon layer 2 (index 2): r edges ..., 20, 25, ... -> r bin 5 has centre 22.5 mm;
    # alpha bin 7 of 10 has centre -pi + 7.5 * 2pi/10 = 0.5 pi.
    showers[0, _voxel(2, 7, 5)] = 10.0
    f = compute_features([1000.0], showers, PHOTONS, threshold_mev=1.0)
    assert f.e_tot[0] == 10.0
    np.testing.assert_array_equal(f.e_layer[0], [0, 0, 10.0, 0, 0])
    alpha = -math.pi + 7.5 * 2 * math.pi / 10
    assert f.ec_eta[0, 2] == pytest.approx(22.5 * math.cos(alpha), abs=1e-12)
    assert f.ec_phi[0, 2] == pytest.approx(22.5, rel=1e-14)
    assert f.ec_r[0, 2] == pytest.approx(22.5, rel=1e-14)
    for width in (f.width_eta, f.width_phi, f.width_r):
        assert width[0, 2] < 1e-6
    # Empty layers: every energy-weighted quantity is 0 (the +1e-16 denominator), sparsity 1.
    for field in (f.ec_eta, f.ec_phi, f.ec_r, f.width_eta, f.width_phi, f.width_r):
        assert np.all(field[0, [0, 1, 3, 4]] == 0.0)
    np.testing.assert_allclose(f.sparsity[0], [1, 1, 1 - 1 / 190, 1, 1])


def test_two_voxels_in_a_layer_without_angular_bins():
    showers = _empty()
    # Layer 0 r bins 0 and 1: centres 2.5 and 7.5 mm, energies 3 and 1 MeV.
    showers[0, _voxel(0, 0, 0)] = 3.0
    showers[0, _voxel(0, 0, 1)] = 1.0
    f = compute_features([500.0], showers, PHOTONS)
    # EC = (3*2.5 + 1*7.5)/4 = 3.75; width^2 = (3*2.5^2 + 1*7.5^2)/4 - 3.75^2 = 4.6875.
    assert f.ec_r[0, 0] == pytest.approx(3.75)
    assert f.width_r[0, 0] == pytest.approx(math.sqrt(4.6875))
    # One angular bin: alpha = 0, so eta = r and phi = 0, as in the CaloChallenge.
    assert f.ec_eta[0, 0] == pytest.approx(3.75) and f.width_eta[0, 0] == pytest.approx(
        math.sqrt(4.6875)
    )
    assert f.ec_phi[0, 0] == 0.0 and f.width_phi[0, 0] == 0.0
    assert f.sparsity[0, 0] == pytest.approx(1 - 2 / 8)


def test_two_voxels_on_opposite_angular_bins():
    showers = _empty()
    # Layer 1, r bin 0 (centre 1 mm); alpha bins 2 and 7 have centres -pi/2 and +pi/2,
    # so phi = -1 and +1 mm, eta = 0. Energies 3 and 1 MeV.
    showers[0, _voxel(1, 2, 0)] = 3.0
    showers[0, _voxel(1, 7, 0)] = 1.0
    f = compute_features([500.0], showers, PHOTONS)
    assert f.ec_phi[0, 1] == pytest.approx(-0.5)  # (3*(-1) + 1*1)/4
    assert f.width_phi[0, 1] == pytest.approx(math.sqrt(0.75))  # <phi^2> - <phi>^2 = 1 - 0.25
    assert f.ec_eta[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert f.width_eta[0, 1] == pytest.approx(0.0, abs=1e-7)
    assert f.ec_r[0, 1] == pytest.approx(1.0) and f.width_r[0, 1] == pytest.approx(0.0, abs=1e-7)


def test_threshold_zeroes_small_voxels_everywhere():
    showers = _empty(2)
    showers[:, _voxel(0, 0, 0)] = 5.0
    showers[:, _voxel(0, 0, 3)] = 0.5  # below 1 MeV
    showers[:, _voxel(0, 0, 4)] = 1.0  # exactly at the threshold: kept
    cut = compute_features([100.0, 100.0], showers, PHOTONS, threshold_mev=1.0)
    assert cut.e_tot[0] == 6.0 and cut.e_layer[0, 0] == 6.0
    assert cut.sparsity[0, 0] == pytest.approx(1 - 2 / 8)
    assert cut.ec_r[0, 0] == pytest.approx((5 * 2.5 + 1 * 75.0) / 6)
    kept = compute_features([100.0, 100.0], showers, PHOTONS, threshold_mev=0.0)
    assert kept.e_tot[0] == 6.5 and kept.sparsity[0, 0] == pytest.approx(1 - 3 / 8)
    # The input is not modified.
    assert showers[0, _voxel(0, 0, 3)] == 0.5


def test_nan_voxels_are_not_hidden_by_the_threshold():
    showers = _empty()
    showers[0, _voxel(1, 0, 0)] = np.nan  # a broken generator's output must stay visible
    f = compute_features([100.0], showers, PHOTONS)
    assert np.isnan(f.e_tot[0]) and np.isnan(f.e_layer[0, 1]) and f.e_layer[0, 0] == 0.0


def test_empty_shower_gives_finite_columns():
    f = compute_features([256.0], _empty(), PHOTONS)
    columns = classifier_columns(f, PHOTONS)
    assert np.all(np.isfinite(columns))
    names = classifier_column_names(PHOTONS)
    assert columns[0, names.index("log10_E_tot")] == pytest.approx(-8.0)
    assert np.all(f.sparsity == 1.0)


# ----- an independent computation: per event, per layer, central moments ------------------------
def _reference_features(e_inc, showers, geometry, threshold):
    """Loop over events and layers; widths from the central second moment sum w (x - EC)^2."""
    n, n_layers = len(showers), geometry.n_layers
    out = {
        k: np.zeros((n, n_layers))
        for k in (
            "e_layer",
            "ec_eta",
            "ec_phi",
            "ec_r",
            "width_eta",
            "width_phi",
            "width_r",
            "sparsity",
        )
    }
    e_tot = np.zeros(n)
    for i in range(n):
        shower = np.where(showers[i] < threshold, 0.0, showers[i])
        e_tot[i] = sum(shower)
        for l, (layer, s) in enumerate(zip(geometry.layers, geometry.layer_slices)):
            w = shower[s]
            edges = np.asarray(layer.r_edges)
            r_mid = (edges[:-1] + edges[1:]) / 2
            alpha_mid = -math.pi + (np.arange(layer.n_alpha) + 0.5) * 2 * math.pi / layer.n_alpha
            r = np.tile(r_mid, layer.n_alpha)
            alpha = np.repeat(alpha_mid, layer.n_r)
            coords = {"eta": r * np.cos(alpha), "phi": r * np.sin(alpha), "r": r}
            total = w.sum()
            out["e_layer"][i, l] = total
            out["sparsity"][i, l] = np.mean(w <= 0)
            if total > 0:
                for name, x in coords.items():
                    mean = (w * x).sum() / total
                    out[f"ec_{name}"][i, l] = mean
                    out[f"width_{name}"][i, l] = math.sqrt((w * (x - mean) ** 2).sum() / total)
    return ShowerFeatures(e_inc=np.asarray(e_inc, float), e_tot=e_tot, **out)


@pytest.mark.parametrize("geometry", [PHOTONS, PIONS], ids=["photons", "pions"])
def test_matches_independent_per_layer_computation(geometry):
    rng = np.random.default_rng(7)
    n = 40
    # Sparse, heavy-tailed voxel energies around the threshold, some layers left empty.
    showers = rng.lognormal(0.0, 2.0, (n, geometry.n_voxels)) * (
        rng.random((n, geometry.n_voxels)) < 0.3
    )
    showers[:5, geometry.layer_slices[0]] = 0.0
    e_inc = rng.uniform(256, 4e6, n)
    got = compute_features(e_inc, showers.astype(np.float32), geometry, threshold_mev=1.0)
    want = _reference_features(e_inc, showers.astype(np.float32).astype(np.float64), geometry, 1.0)
    for name in ("e_layer", "e_tot", "ec_eta", "ec_phi", "ec_r", "sparsity"):
        np.testing.assert_allclose(
            getattr(got, name), getattr(want, name), rtol=1e-10, atol=1e-9, err_msg=name
        )
    # Raw-moment widths lose digits against central moments when width << |EC|: compare in mm.
    for name in ("width_eta", "width_phi", "width_r"):
        np.testing.assert_allclose(
            getattr(got, name), getattr(want, name), rtol=1e-6, atol=1e-5, err_msg=name
        )


# ----- classifier columns ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("geometry", "n_columns"), [(PHOTONS, 30), (PIONS, 46)], ids=["photons", "pions"]
)
def test_classifier_columns_order_and_names(geometry, n_columns):
    rng = np.random.default_rng(3)
    showers = rng.exponential(5.0, (6, geometry.n_voxels))
    e_inc = rng.uniform(256, 65536, 6)
    f = compute_features(e_inc, showers, geometry)
    columns = classifier_columns(f, geometry)
    names = classifier_column_names(geometry)
    assert columns.shape == (6, n_columns) and len(names) == n_columns == len(set(names))
    assert columns.dtype == np.float64
    col = {name: columns[:, i] for i, name in enumerate(names)}
    np.testing.assert_allclose(col["log10_E_inc"], np.log10(e_inc))
    np.testing.assert_allclose(col["log10_E_tot"], np.log10(f.e_tot + 1e-8))
    alpha_ids = [geometry.layer_ids[i] for i in geometry.alpha_binned_layers]
    for l, layer_id in enumerate(geometry.layer_ids):
        np.testing.assert_allclose(
            col[f"log10_E_layer{layer_id}"], np.log10(f.e_layer[:, l] + 1e-8)
        )
        np.testing.assert_allclose(col[f"sparsity_layer{layer_id}"], f.sparsity[:, l])
        np.testing.assert_allclose(col[f"EC_r_layer{layer_id}"], f.ec_r[:, l] / 100)
        np.testing.assert_allclose(col[f"width_r_layer{layer_id}"], f.width_r[:, l] / 100)
        if layer_id in alpha_ids:
            np.testing.assert_allclose(col[f"EC_eta_layer{layer_id}"], f.ec_eta[:, l] / 100)
            np.testing.assert_allclose(col[f"EC_phi_layer{layer_id}"], f.ec_phi[:, l] / 100)
            np.testing.assert_allclose(col[f"width_eta_layer{layer_id}"], f.width_eta[:, l] / 100)
            np.testing.assert_allclose(col[f"width_phi_layer{layer_id}"], f.width_phi[:, l] / 100)
        else:
            assert f"EC_eta_layer{layer_id}" not in col
    # The group order of docs/design/metrics.md#high-level-features, spelled out.
    a = len(alpha_ids)
    L = geometry.n_layers
    prefixes = (
        ["log10_E_inc"]
        + ["log10_E_layer"] * L
        + ["EC_eta"] * a
        + ["EC_phi"] * a
        + ["width_eta"] * a
    )
    prefixes += (
        ["width_phi"] * a + ["log10_E_tot"] + ["sparsity"] * L + ["EC_r"] * L + ["width_r"] * L
    )
    assert all(name.startswith(p) for name, p in zip(names, prefixes))


def test_geometry_mismatch_is_a_clear_error():
    with pytest.raises(DataError, match="expects \\(N, 533\\)"):
        compute_features([1.0], _empty(), PIONS)
    with pytest.raises(DataError, match="2 incident energies for 1 showers"):
        compute_features([1.0, 2.0], _empty(), PHOTONS)
    with pytest.raises(ConfigError, match="threshold"):
        compute_features([1.0], _empty(), PHOTONS, threshold_mev=-1.0)
    f = compute_features([1.0], _empty(), PHOTONS)
    with pytest.raises(DataError, match="5 layers"):
        classifier_columns(f, PIONS)


# ----- files ----------------------------------------------------------------------------------
def test_streamed_features_equal_in_memory_features(tmp_path):
    rng = np.random.default_rng(11)
    showers = rng.exponential(3.0, (25, PHOTONS.n_voxels)) * (
        rng.random((25, PHOTONS.n_voxels)) < 0.5
    )
    e_inc = rng.uniform(256, 4096, 25)
    path = write_showers(tmp_path / "s.h5", e_inc, showers, dtype=np.float32)
    data = read_showers(path)
    whole = compute_features(data.incident_energies, data.showers, PHOTONS)
    streamed = features_from_file(path, "photons", chunk_size=7)
    assert len(list(iter_features(path, PHOTONS, chunk_size=7))) == 4
    # Not bit-exact: the layer sums are a matrix product whose BLAS kernel (and so the last bit)
    # depends on the number of rows, so chunks of 7 and the whole file may differ by an ulp.
    np.testing.assert_allclose(
        classifier_columns(streamed, PHOTONS),
        classifier_columns(whole, PHOTONS),
        rtol=1e-12,
        atol=1e-9,
    )


@pytest.fixture(scope="module")
def g4_features(g4_photons_path):
    data = read_showers(g4_photons_path)
    return data, features_from_file(g4_photons_path, "photons", chunk_size=7_000)


def test_g4_dev_file_features(g4_features):
    data, f = g4_features
    n = len(data)
    assert n == 40_500 and len(f) == n
    cut = np.where(data.showers >= 1.0, data.showers, 0.0)
    np.testing.assert_allclose(f.e_tot, cut.sum(axis=1), rtol=1e-12)
    for l, s in enumerate(PHOTONS.layer_slices):
        np.testing.assert_allclose(f.e_layer[:, l], cut[:, s].sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(f.sparsity[:, l], 1.0 - (cut[:, s] > 0).mean(axis=1))
    np.testing.assert_allclose(f.e_layer.sum(axis=1), f.e_tot, rtol=1e-12)
    columns = classifier_columns(f, PHOTONS)
    assert columns.shape == (n, 30) and np.all(np.isfinite(columns))
    # Physics sanity on this reference: photons deposit most energy in EMB2 at high energy, and
    # the shower centre sits on the axis (|mean EC| well below a millimetre).
    high = f.e_inc > 30_000
    assert np.mean(f.e_layer[high, 2] / f.e_tot[high]) > 0.6
    assert abs(np.mean(f.ec_eta[:, 2])) < 1.0 and abs(np.mean(f.ec_phi[:, 2])) < 1.0
