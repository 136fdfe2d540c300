"""Conformal typicality: hand-worked p-values, calibration on exchangeable samples, power on a
shifted one, and the two-independent-reference-samples check on simulated showers."""

from __future__ import annotations

import numpy as np
import pytest

from qcalo.data.features import classifier_columns, compute_features
from qcalo.data.geometry import load_geometry
from qcalo.data.simulation import simulate
from qcalo.evaluation.typicality import conformal_p_values, conformal_typicality


def test_p_values_hand_worked():
    calibration = np.array([1.0, 2.0, 3.0, 4.0])
    # s = 2.5: calibration ≥ 2.5 are {3, 4} → (1 + 2)/5; s = 0 → 5/5; s = 9 → 1/5; ties count.
    np.testing.assert_allclose(
        conformal_p_values(calibration, np.array([2.5, 0.0, 9.0, 3.0])),
        [3 / 5, 5 / 5, 1 / 5, 3 / 5],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exchangeable_samples_are_atypical_at_rate_alpha(seed):
    rng = np.random.default_rng(seed)
    energies = np.repeat([256.0, 4096.0], 3000)
    ref = rng.normal(size=(6000, 4)) + np.log2(energies)[:, None]
    gen_e = np.repeat([256.0, 4096.0], 1500)
    gen = rng.normal(size=(3000, 4)) + np.log2(gen_e)[:, None]
    result = conformal_typicality(ref, energies, gen, gen_e, seed=seed)
    assert result["per_energy_calibration"]
    for alpha in ("0.05", "0.01"):
        block = result["alphas"][alpha]
        assert abs(block["pull"]) < 3.5, block
    assert set(result["per_energy"]) == {"256", "4096"}


def test_a_shifted_generator_is_flagged():
    rng = np.random.default_rng(5)
    e = np.full(4000, 1024.0)
    ref = rng.normal(size=(4000, 3))
    gen = rng.normal(size=(2000, 3)) + np.array([1.5, 0.0, 0.0])
    result = conformal_typicality(ref, e, gen, e[:2000])
    assert result["alphas"]["0.05"]["fraction"] > 0.2


def test_continuous_energies_use_one_calibration_with_log_energy():
    rng = np.random.default_rng(2)
    e_ref, e_gen = rng.uniform(256, 65536, 3000), rng.uniform(256, 65536, 1000)
    ref = rng.normal(size=(3000, 2)) + np.log(e_ref)[:, None]
    gen = rng.normal(size=(1000, 2)) + np.log(e_gen)[:, None]
    result = conformal_typicality(ref, e_ref, gen, e_gen)
    assert not result["per_energy_calibration"]
    assert abs(result["alphas"]["0.05"]["pull"]) < 3.5


def test_two_independent_reference_samples_give_alpha_on_showers():
    photons = load_geometry("photons")
    energies = [1024.0, 16384.0]

    def columns(seed: int, n: int):
        data = simulate("photon", energies, n, seed=seed)
        feats = compute_features(data.incident_energies, data.showers, photons, threshold_mev=1.0)
        return classifier_columns(feats, photons), data.incident_energies

    ref, ref_e = columns(1, 1500)
    other, other_e = columns(2, 800)
    result = conformal_typicality(ref, ref_e, other, other_e, seed=3)
    for alpha in ("0.05", "0.01"):
        assert abs(result["alphas"][alpha]["pull"]) < 3.5, result["alphas"]


def test_error_includes_the_finite_calibration_set():
    rng = np.random.default_rng(7)
    e_ref, e_gen = np.full(100, 512.0), np.full(5000, 512.0)
    result = conformal_typicality(
        rng.normal(size=(100, 2)), e_ref, rng.normal(size=(5000, 2)), e_gen
    )
    block = result["alphas"]["0.05"]
    n_cal = result["n_calibration"]
    assert n_cal == 50
    assert block["error"] >= np.sqrt(0.05 * 0.95 / n_cal)  # dominated by 50 calibration showers
