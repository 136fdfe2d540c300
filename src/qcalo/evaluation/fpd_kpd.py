"""Fréchet and kernel physics distances (FPD, KPD) as ``jetnet.evaluation`` defines them.

Definitions (Kansal et al., arXiv:2211.10295; jetnet's ``gen_metrics.fpd``/``kpd``), reimplemented
here so that qcalo does not pull jetnet's heavy dependencies:

* features are divided column-wise by the reference's maximum absolute value (columns that are
  all zero are left alone), the generated sample by the same factors;
* **FPD**: for ``num_points`` batch sizes N evenly spaced in 1/N between ``1/min_samples`` and
  ``1/max_samples``, the Fréchet distance between Gaussians fitted to ``num_batches`` bootstrap
  batches (drawn with replacement) of each sample is averaged; a straight line in 1/N with
  non-negative intercept and slope is fitted and its intercept (the N → ∞ value) is the FPD, the
  fit's standard error on the intercept its error;
* **KPD**: the unbiased quadratic MMD² estimate with the polynomial kernel
  k(x, y) = (x·y/d + 1)^4 (d features) on ``num_batches`` bootstrap batches of ``batch_size``;
  the median is the KPD and half the 16.275–83.725 percentile range its error.

The CaloChallenge reports both ×10³ (see :func:`fpd_kpd_1e3`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import iqr

__all__ = [
    "frechet_distance",
    "fpd",
    "kpd",
    "mmd_poly_unbiased",
    "normalise_features",
    "fpd_kpd_1e3",
]


def normalise_features(
    reference: np.ndarray, generated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Divide both (N, d) arrays column-wise by max |reference| (1 where that is 0)."""
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    scale = np.max(np.abs(reference), axis=0)
    scale[scale == 0] = 1.0
    return reference / scale, generated / scale


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein²) distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 − mu2|² + tr(σ1) + tr(σ2) − 2 tr((σ1 σ2)^½)``, with tr((σ1 σ2)^½) computed as
    tr((σ1^½ σ2 σ1^½)^½), which has the same eigenvalues but stays symmetric, so no complex
    round-off appears (``scipy.linalg.sqrtm`` of σ1σ2 can).
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    inner = 0.5 * (inner + inner.T)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(inner), 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def _linear(x, intercept, slope):
    return intercept + slope * x


def fpd(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    num_batches: int = 20,
    num_points: int = 10,
    normalise: bool = True,
    seed: int = 42,
) -> tuple[float, float]:
    """FPD (value, error) of two (N, d) feature arrays, extrapolated to infinitely many samples.

    jetnet's defaults; they assume ≥ 50,000 events per sample (smaller samples are bootstrapped
    to those batch sizes, as jetnet does). Returns plain floats, not scaled by 10³.
    """
    x, y = (
        normalise_features(reference, generated)
        if normalise
        else (np.asarray(reference, dtype=np.float64), np.asarray(generated, dtype=np.float64))
    )
    _check_features(x, y)
    batch_sizes = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(
        np.int64
    )
    rng = np.random.default_rng(seed)
    means = []
    for batch_size in batch_sizes:
        values = []
        for _ in range(num_batches):
            sample_x = x[rng.choice(len(x), size=batch_size)]
            sample_y = y[rng.choice(len(y), size=batch_size)]
            values.append(
                frechet_distance(
                    sample_x.mean(axis=0),
                    np.cov(sample_x, rowvar=False),
                    sample_y.mean(axis=0),
                    np.cov(sample_y, rowvar=False),
                )
            )
        means.append(np.mean(values))
    params, covariance = curve_fit(
        _linear, 1.0 / batch_sizes, np.asarray(means), bounds=([0.0, 0.0], [np.inf, np.inf])
    )
    return float(params[0]), float(np.sqrt(covariance[0, 0]))


def mmd_poly_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 4) -> float:
    """Unbiased MMD² of (m, d) and (n, d) samples with kernel (x·y/d + 1)^degree."""
    gamma = 1.0 / x.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        base = a @ b.T * gamma + 1.0
        # integer power by repeated multiplication: several times faster than np.power
        out = base.copy()
        for _ in range(degree - 1):
            out *= base
        return out

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    m, n = len(x), len(y)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2.0 * k_xy.mean()
    )


def kpd(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    num_batches: int = 10,
    batch_size: int = 5_000,
    normalise: bool = True,
    seed: int = 42,
) -> tuple[float, float]:
    """KPD (median, error) of two (N, d) feature arrays; not scaled by 10³."""
    x, y = (
        normalise_features(reference, generated)
        if normalise
        else (np.asarray(reference, dtype=np.float64), np.asarray(generated, dtype=np.float64))
    )
    _check_features(x, y)
    values = []
    for i in range(num_batches):
        rng = np.random.default_rng(seed + 1000 * i)
        sample_x = x[rng.choice(len(x), size=batch_size)]
        sample_y = y[rng.choice(len(y), size=batch_size)]
        values.append(mmd_poly_unbiased(sample_x, sample_y))
    return float(np.median(values)), float(iqr(values, rng=(16.275, 83.725)) / 2.0)


def fpd_kpd_1e3(
    reference: np.ndarray, generated: np.ndarray, *, seed: int = 42, **fpd_kwargs
) -> dict[str, list[float]]:
    """``{"fpd": [value, error], "kpd": [value, error]}``, both ×10³ as the CaloChallenge reports them.

    ``fpd_kwargs`` go to :func:`fpd` (``min_samples``, ``max_samples``, ...); KPD keeps jetnet's
    defaults.
    """
    fpd_value, fpd_error = fpd(reference, generated, seed=seed, **fpd_kwargs)
    kpd_value, kpd_error = kpd(reference, generated, seed=seed)
    return {"fpd": [fpd_value * 1e3, fpd_error * 1e3], "kpd": [kpd_value * 1e3, kpd_error * 1e3]}


def _check_features(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"feature arrays must be (N, d) with the same d, got {x.shape} and {y.shape}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("feature arrays contain NaN or inf")
