"""Separation power, FPD/KPD and the classifier against hand computations and closed forms."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.linalg import sqrtm

from qcalo.data.geometry import load_geometry
from qcalo.errors import ConfigError
from qcalo.evaluation.classifier import get_profile, low_level_inputs, run_classifier_test
from qcalo.evaluation.fpd_kpd import (
    fpd,
    frechet_distance,
    kpd,
    mmd_poly_unbiased,
    normalise_features,
)
from qcalo.evaluation.histograms import energy_bin_edges_mev, normalised_histogram, separation_power

TINY = replace(get_profile("fast"), hidden=(64, 64), epochs=4)


# ----- separation power ------------------------------------------------------------------------


def test_separation_power_hand_worked():
    # ½ [(0.5−0)²/0.5 + 0 + (0−0.5)²/0.5] = ½ (0.5 + 0.5) = 0.5
    assert separation_power([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5)
    assert separation_power([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert separation_power([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    # ½ [(0.1)²/0.5 + (0.1)²/1.5] = ½ (1/50 + 1/150) = 1/75
    assert separation_power([0.3, 0.7], [0.2, 0.8]) == pytest.approx(1 / 75)


def test_normalised_histogram_counts_only_entries_in_range():
    h = normalised_histogram(
        np.array([-5.0, 0.1, 0.2, 0.6, 0.7, 0.8, 9.0]), np.array([0.0, 0.5, 1.0])
    )
    np.testing.assert_allclose(h, [2 / 5, 3 / 5])
    np.testing.assert_array_equal(
        normalised_histogram(np.array([7.0]), np.array([0.0, 1.0])), [0.0]
    )


def test_energy_bins_keep_float32_powers_of_two_in_their_own_bin():
    energies = np.array([256.0, np.float32(2.0**16), 1000.0])
    edges = energy_bin_edges_mev(energies)
    assert edges[0] == 256.0 and edges[-1] == 2.0**17


# ----- Fréchet distance, FPD, KPD --------------------------------------------------------------


def test_frechet_distance_matches_closed_form_with_scipy_sqrtm():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.3 * np.eye(5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)
    # one dimension: (μ1 − μ2)² + (σ1 − σ2)²
    assert frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[9.0]])
    ) == pytest.approx(4.0 + 1.0)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fpd_recovers_the_frechet_distance_of_two_gaussians():
    rng = np.random.default_rng(0)
    n, cov = 30_000, np.diag([1.0, 2.0, 0.5])
    shift = np.array([0.6, 0.0, -0.3])
    x = rng.multivariate_normal(np.zeros(3), cov, size=n)
    y = rng.multivariate_normal(shift, cov, size=n)
    # jetnet normalises both by the reference's max |x|; the Gaussians' FD scales accordingly
    scale = np.max(np.abs(x), axis=0)
    expected = float(np.sum((shift / scale) ** 2))
    value, error = fpd(
        x, y, min_samples=3000, max_samples=8000, num_batches=8, num_points=6, seed=1
    )
    finite_sample_floor = 4 * np.trace(cov / np.outer(scale, scale)) / n
    assert abs(value - expected) < 3 * error + finite_sample_floor + 0.03 * expected


def test_fpd_of_one_distribution_vanishes_like_one_over_n():
    """FPD between two samples of one distribution is the finite-sample floor: ∝ 1/N, → 0."""
    rng = np.random.default_rng(1)
    kwargs = dict(num_batches=6, num_points=5, seed=2)
    values = {}
    for n in (2_000, 16_000):
        x, y = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
        values[n] = fpd(x, y, min_samples=n // 2, max_samples=n, **kwargs)[0]
    assert 3.0 < values[2_000] / values[16_000] < 25.0
    assert values[16_000] < 1e-3


def test_unbiased_mmd_against_a_double_loop():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.2
    k = lambda a, b: (a @ b / 3 + 1.0) ** 4  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / (6 * 5)
    assert mmd_poly_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kpd_is_zero_within_errors_for_one_distribution_and_positive_for_another():
    rng = np.random.default_rng(2)
    x, y, z = (
        rng.normal(size=(4000, 3)),
        rng.normal(size=(4000, 3)),
        rng.normal(size=(4000, 3)) + 0.5,
    )
    value, error = kpd(x, y, batch_size=1000, num_batches=10)
    assert abs(value) < 3 * error + 1e-4
    shifted, shifted_error = kpd(x, z, batch_size=1000, num_batches=10)
    assert shifted > 10 * shifted_error and shifted > 0.01


def test_normalise_features_uses_reference_maxima_and_ignores_zero_columns():
    ref = np.array([[1.0, 0.0, -4.0], [2.0, 0.0, 2.0]])
    gen = np.array([[4.0, 3.0, 1.0]])
    r, g = normalise_features(ref, gen)
    np.testing.assert_allclose(r, [[0.5, 0.0, -1.0], [1.0, 0.0, 0.5]])
    np.testing.assert_allclose(g, [[2.0, 3.0, 0.25]])


# ----- classifier ------------------------------------------------------------------------------


def test_low_level_normed_inputs_by_hand():
    geom = load_geometry("photons")
    showers = np.zeros((1, geom.n_voxels))
    showers[0, 0], showers[0, 1] = 30.0, 10.0  # layer 0: 40 MeV
    showers[0, geom.layer_slices[1].start] = 5.0  # layer 1: 5 MeV
    x = low_level_inputs(np.array([1000.0]), showers, geom, normed=True)
    assert x.shape == (1, 1 + geom.n_voxels + geom.n_layers)
    assert x[0, 0] == pytest.approx(3.0)
    assert x[0, 1] == pytest.approx(0.75) and x[0, 2] == pytest.approx(0.25)
    assert x[0, 1 + geom.layer_slices[1].start] == pytest.approx(1.0)
    np.testing.assert_allclose(
        x[0, -geom.n_layers :], np.log10(np.array([40.0, 5.0, 0.0, 0.0, 0.0]) + 1e-8)
    )
    plain = low_level_inputs(np.array([1000.0]), showers, geom, normed=False)
    assert plain[0, 1] == pytest.approx(0.03)


def test_classifier_cannot_separate_one_distribution_and_separates_another():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10_000, 6)), rng.normal(size=(10_000, 6))
    same = run_classifier_test(x, y, profile=TINY, seed=1)
    assert abs(same["auc"] - 0.5) < 0.03
    assert abs(same["jsd"]) < 0.02
    assert same["n_train"] == 12_000 and same["n_val"] == 4_000
    other = run_classifier_test(x, y * 2.0 + 1.0, profile=TINY, seed=1)
    assert other["auc"] > 0.9 and other["jsd"] > 0.3


def test_classifier_is_reproducible_with_a_seed():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(600, 4)), rng.normal(size=(900, 4)) + 0.3
    a = run_classifier_test(x, y, profile=TINY, seed=4)
    b = run_classifier_test(x, y, profile=TINY, seed=4)
    assert a["auc"] == b["auc"] and a["jsd"] == b["jsd"]
    assert a["n_train"] == 720  # the larger sample is subsampled to 600 events


def test_unknown_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="calochallenge"):
        get_profile("slow")


def test_calochallenge_profile_holds_the_published_settings():
    p = get_profile("calochallenge")
    assert (
        p.hidden == (2048, 2048, 2048)
        and p.epochs == 50
        and p.learning_rate == 2e-4
        and p.batch_size == 1000
    )
