"""Latent closure: exact latents pass, distorted ones fail, against scipy's own distributions."""

from __future__ import annotations

import numpy as np
import pytest

from qcalo.evaluation.closure import latent_closure, stage_closure


def test_standard_normal_latents_pass():
    z = np.random.default_rng(1).normal(size=(4000, 6))
    result = stage_closure(z)
    assert result["dim"] == 6 and result["n"] == 4000
    assert min(result["ks_p_value"]) > 1e-3
    assert result["norm_chi2"]["p_value"] > 1e-3
    assert result["norm_chi2"]["mean_over_dim"] == pytest.approx(1.0, abs=0.05)


def test_a_too_wide_and_a_correlated_latent_fail():
    rng = np.random.default_rng(2)
    wide = rng.normal(size=(4000, 3)) * np.array([1.0, 1.3, 1.0])
    result = stage_closure(wide)
    assert result["ks_max"]["dim"] == 1 and result["ks_p_value"][1] < 1e-6
    assert result["norm_chi2"]["mean_over_dim"] > 1.1
    # Correlated but with exact N(0, 1) marginals: only the joint test sees it.
    a = rng.normal(size=4000)
    corr = np.column_stack([a, 0.9 * a + np.sqrt(1 - 0.81) * rng.normal(size=4000)])
    joint = stage_closure(corr)
    assert min(joint["ks_p_value"]) > 1e-4
    assert joint["norm_chi2"]["p_value"] < 1e-6


def test_chi2_statistic_matches_a_hand_computation():
    z = np.array([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.3], [1.2, -2.2]])
    from scipy import stats

    norm2 = (z**2).sum(axis=1)
    expected = stats.kstest(norm2, stats.chi2(2).cdf).statistic
    # and by hand: max over sorted points of |F(x_i) − i/n| on both sides
    x = np.sort(norm2)
    cdf = 1 - np.exp(-x / 2)  # χ²(2) is exponential with mean 2
    n = len(x)
    by_hand = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert stage_closure(z)["norm_chi2"]["statistic"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(by_hand, rel=1e-12)


def test_non_finite_rows_are_excluded_and_stages_kept_apart():
    z = np.random.default_rng(3).normal(size=(100, 2))
    z[5, 1] = np.inf
    result = latent_closure({"stage1": z, "stage2": z[:, :1]})
    assert result["stage1"]["n_excluded"] == 1 and result["stage1"]["n"] == 99
    assert result["stage2"]["dim"] == 1
    with pytest.raises(ValueError, match="shape"):
        stage_closure(np.zeros(5))
