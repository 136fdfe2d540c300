"""Conformal typicality: how many generated showers look atypical of the reference?

Following Araz & Spannowsky 2025 ("Conformal prediction as a calibration standard for machine
learning in HEP") and the split-conformal recipe (Vovk et al. 2005; Lei et al. 2018): the
reference showers are split in two halves. The *proper* half defines a nonconformity score, here
the distance to the k-th nearest proper reference shower in standardised high-level features
(larger = less typical). The *calibration* half, never used to build the score, gives the
distribution of scores of genuine showers. A generated shower x gets the conformal p-value

    p(x) = (1 + #{calibration showers c : s(c) ≥ s(x)}) / (n_calibration + 1),

which is uniform on (0, 1] for showers exchangeable with the reference. So for a perfect
generator the fraction of generated showers with p ≤ α is α (up to binomial fluctuations), for
every α; a larger fraction says by how much the generator produces atypical showers.

When the incident energies are a small discrete set (as in CaloChallenge DS1 files), the whole
procedure runs per energy, so that a shower is judged against reference showers of its own
energy; otherwise it runs once over all events with log E_inc as one more feature.

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref, gen = rng.normal(size=(4000, 3)), rng.normal(size=(2000, 3))
    >>> result = conformal_typicality(ref, np.ones(4000), gen, np.ones(2000), seed=1)
    >>> abs(result["alphas"]["0.05"]["fraction"] - 0.05) < 0.02
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

__all__ = ["conformal_p_values", "conformal_typicality", "ALPHAS"]

#: Significance levels reported by default.
ALPHAS = (0.05, 0.01)
#: At most this many distinct incident energies → the test runs per energy.
MAX_DISCRETE_ENERGIES = 64
#: Each per-energy group needs this many reference showers (both halves together).
MIN_REFERENCE_PER_ENERGY = 40


def conformal_p_values(calibration_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Split-conformal p-values (n,) of ``scores`` (n,) against ``calibration_scores`` (m,):
    (1 + #{c ≥ s}) / (m + 1). Larger scores are less typical."""
    calibration = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    at_least = calibration.size - np.searchsorted(calibration, scores, side="left")
    return (1.0 + at_least) / (calibration.size + 1.0)


def _knn_scores(
    proper: np.ndarray, calibration: np.ndarray, generated: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the k-th nearest proper point, in features standardised on ``proper``."""
    mean = proper.mean(axis=0)
    scale = proper.std(axis=0)
    scale[scale == 0] = 1.0
    index = NearestNeighbors(n_neighbors=min(k, len(proper))).fit((proper - mean) / scale)
    cal = index.kneighbors((calibration - mean) / scale)[0][:, -1]
    gen = index.kneighbors((generated - mean) / scale)[0][:, -1]
    return cal, gen


def _summary(
    p_values: np.ndarray, alphas: tuple[float, ...], n_calibration: int
) -> dict[str, dict[str, float]]:
    """Fraction with p ≤ α, its error and pull, for each α.

    The error has two parts: the binomial error of the generated sample (at least the one a
    perfect generator would show, so that "consistent with α" can be read off near 0) and the
    finite calibration set's, α(1 − α)/n_calibration (the coverage of split conformal given one
    calibration set fluctuates by that much; measured on two independent Geant4 samples in
    benchmarks/results/typicality_calibration_g4.json)."""
    out = {}
    n = len(p_values)
    for alpha in alphas:
        fraction = float(np.mean(p_values <= alpha)) if n else math.nan
        if n and n_calibration:
            variance = alpha * (1 - alpha)
            expected = math.sqrt(variance / n + variance / n_calibration)
            error = math.sqrt(
                max(fraction * (1 - fraction), variance) / n + variance / n_calibration
            )
        else:
            expected = error = math.nan
        out[f"{alpha:g}"] = {
            "fraction": fraction,
            "error": error,
            "n": n,
            "pull": (fraction - alpha) / expected if n else math.nan,
        }
    return out


def _prepare(features: np.ndarray) -> np.ndarray:
    # Energies and widths are positive and span decades: compare them on a log scale.
    features = np.asarray(features, dtype=np.float64)
    return np.sign(features) * np.log1p(np.abs(features))


def conformal_typicality(
    reference_features: np.ndarray,
    reference_energies: np.ndarray,
    generated_features: np.ndarray,
    generated_energies: np.ndarray,
    *,
    k: int = 5,
    alphas: tuple[float, ...] = ALPHAS,
    seed: int = 0,
) -> dict[str, Any]:
    """Fraction of generated showers atypical of the reference at each α, overall and per E_inc.

    ``*_features``: (N, F) high-level features (e.g. the CaloChallenge classifier columns);
    ``*_energies``: (N,) incident energies in MeV. Returns a dict (the metrics.json block
    ``typicality``): ``score`` ("knn"), ``k``, ``per_energy_calibration`` (bool),
    ``n_proper``/``n_calibration``/``n_generated``, ``alphas`` ({"0.05": {fraction, error,
    n, pull}, …}; a perfect generator gives fraction ≈ α, pull = (fraction − α)/σ_α with σ_α
    from the generated and the calibration sample sizes), and
    ``per_energy`` ({"1024": {"0.05": …}, …}).
    """
    ref = _prepare(reference_features)
    gen = _prepare(generated_features)
    ref_e = np.asarray(reference_energies, dtype=np.float64).reshape(-1)
    gen_e = np.asarray(generated_energies, dtype=np.float64).reshape(-1)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        raise ValueError(
            f"typicality needs feature arrays (N, F) with equal F; got {ref.shape} and {gen.shape}"
        )
    if len(ref) != len(ref_e) or len(gen) != len(gen_e):
        raise ValueError("typicality: one incident energy per shower is needed")
    rng = np.random.default_rng(seed)
    energies = np.unique(ref_e)
    per_energy = len(energies) <= MAX_DISCRETE_ENERGIES and all(
        np.count_nonzero(ref_e == e) >= MIN_REFERENCE_PER_ENERGY for e in energies
    )
    if per_energy:
        groups = [(e, ref_e == e, gen_e == e) for e in energies]
    else:
        ref = np.column_stack([ref, np.log(ref_e)])
        gen = np.column_stack([gen, np.log(gen_e)])
        groups = [(math.nan, np.ones(len(ref), bool), np.ones(len(gen), bool))]

    p_all = np.full(len(gen), np.nan)
    n_proper = n_calibration = 0
    calibration_of_energy: dict[float, int] = {}
    for energy, ref_mask, gen_mask in groups:
        if not gen_mask.any():
            continue
        rows = rng.permutation(np.flatnonzero(ref_mask))
        half = len(rows) // 2
        proper, calibration = ref[rows[:half]], ref[rows[half:]]
        cal_scores, gen_scores = _knn_scores(proper, calibration, gen[gen_mask], k)
        p_all[gen_mask] = conformal_p_values(cal_scores, gen_scores)
        n_proper += len(proper)
        n_calibration += len(calibration)
        calibration_of_energy[float(energy)] = len(calibration)
    judged = ~np.isnan(p_all)  # generated energies absent from the reference are not judged
    result: dict[str, Any] = {
        "score": "knn",
        "k": k,
        "per_energy_calibration": bool(per_energy),
        "n_proper": n_proper,
        "n_calibration": n_calibration,
        "n_generated": int(judged.sum()),
        "n_unjudged": int((~judged).sum()),
        "alphas": _summary(p_all[judged], alphas, n_calibration),
        "per_energy": {},
    }
    for e in np.unique(gen_e[judged]):
        mask = judged & (gen_e == e)
        n_cal = calibration_of_energy.get(float(e), n_calibration)
        result["per_energy"][f"{e:g}"] = _summary(p_all[mask], alphas, n_cal)
    return result
