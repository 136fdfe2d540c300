"""Latent closure test for likelihood models: are the latents of held-out showers N(0, I)?

A normalising flow maps a shower x (given E_inc) to a latent z with z ~ N(0, I) if the model is
exact. Mapping held-out *reference* showers through the trained flow and testing the latents is
therefore a goodness-of-fit test of the learned density itself (cf. Araz et al. 2025,
"Communicating likelihoods with normalising flows", who validate learned likelihoods with tests
of the joint distribution). Two tests per stage:

* per latent dimension, the Kolmogorov–Smirnov statistic and p-value against N(0, 1)
  (marginals);
* the χ² test of the joint: ‖z‖² ~ χ²(d) for z ~ N(0, I_d), tested by KS against χ²(d), plus
  the mean of ‖z‖²/d (1 for a perfect model; > 1 means the model is too narrow somewhere).

Example::

    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(5000, 4))
    >>> result = latent_closure({"stage1": z})
    >>> result["stage1"]["norm_chi2"]["p_value"] > 0.01
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["latent_closure", "stage_closure"]


def stage_closure(latents: np.ndarray) -> dict[str, Any]:
    """KS of each dimension against N(0, 1) and of ‖z‖² against χ²(d), for ``latents`` (N, d).

    Returns ``n``, ``dim``, ``ks_statistic``/``ks_p_value`` (lists of d), ``ks_max`` (the worst
    dimension's statistic and index), ``norm_chi2`` ({statistic, p_value, mean_over_dim}).
    Non-finite rows are counted in ``n_excluded`` and left out.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"latents must have shape (N, d) with d ≥ 1; got {z.shape}")
    finite = np.isfinite(z).all(axis=1)
    z = z[finite]
    if len(z) < 2:
        raise ValueError("the latent closure test needs at least two finite latents")
    d = z.shape[1]
    marginals = [stats.kstest(z[:, i], "norm") for i in range(d)]
    statistic = [float(m.statistic) for m in marginals]
    worst = int(np.argmax(statistic))
    norm2 = (z**2).sum(axis=1)
    joint = stats.kstest(norm2, stats.chi2(d).cdf)
    return {
        "n": int(len(z)),
        "n_excluded": int((~finite).sum()),
        "dim": d,
        "ks_statistic": statistic,
        "ks_p_value": [float(m.pvalue) for m in marginals],
        "ks_max": {"statistic": statistic[worst], "dim": worst},
        "norm_chi2": {
            "statistic": float(joint.statistic),
            "p_value": float(joint.pvalue),
            "mean_over_dim": float(norm2.mean() / d),
        },
    }


def latent_closure(latents_by_stage: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`stage_closure` for each stage's latents (e.g. ``{"stage1": z1, "stage2": z2}``)."""
    return {stage: stage_closure(z) for stage, z in latents_by_stage.items()}
