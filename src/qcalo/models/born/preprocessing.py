"""The Born kind's preprocessing fit: the two-stage preprocessing and the Born machine's bin
edges, placed at quantiles of the training events (:func:`fit_born_preprocessing`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import (
    PreprocessingStats,
    ShowerPreprocessing,
    fit_preprocessing,
    logit_forward,
)
from qcalo.errors import DataError
from qcalo.models.born.config import BornModelConfig

__all__ = ["BornStats", "fit_born_preprocessing", "quantile_edges", "support_bounds"]


@dataclass
class BornStats:
    """The preprocessing stats of the two-stage model and the Born machine's bin edges.

    ``edges[i]``: the 2^b_i + 1 increasing bin edges of stage-1 variable i, in the flow's
    stage-1 space; the first and last are the ends of that space, logit(α) and logit(1-α).
    """

    preprocessing: PreprocessingStats
    edges: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "edges": [[float(v) for v in e] for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BornStats:
        if not isinstance(data, dict) or set(data) != {"preprocessing", "edges"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(
                f"Born-machine stats: expected keys ['edges', 'preprocessing'], got {got}"
            )
        return cls(
            PreprocessingStats.from_dict(data["preprocessing"]),
            [[float(v) for v in e] for e in data["edges"]],
        )

    @property
    def e_inc_min(self) -> float:
        return self.preprocessing.e_inc_min

    @property
    def e_inc_max(self) -> float:
        return self.preprocessing.e_inc_max


def support_bounds(alpha: float) -> tuple[float, float]:
    """The ends of the stage-1 space: logit(α) and logit(1 - α) (u = 0 and u = 1)."""
    ends, _ = logit_forward(torch.tensor([0.0, 1.0], dtype=torch.float64), alpha)
    return float(ends[0]), float(ends[1])


def quantile_edges(values: np.ndarray, n_bins: int, lo: float, hi: float, mix: float) -> np.ndarray:
    """``n_bins + 1`` strictly increasing edges from ``lo`` to ``hi`` at the quantiles k/n_bins
    of a mixture: ``(1 - mix)`` × the values' empirical CDF (linearly interpolated) + ``mix`` ×
    the uniform CDF on [lo, hi].

    With ``mix = 0`` the edges would be the plain quantiles, which coincide where the data have
    atoms (e.g. empty layers, all near logit(α)) and leave the tails without edges; the uniform
    part makes the CDF strictly increasing, so the edges are strictly increasing, and bounds
    every bin's width by ``(hi - lo) / (mix · n_bins)``, while data-dense regions still get
    narrow bins.
    """
    x = np.sort(np.clip(np.asarray(values, dtype=np.float64).reshape(-1), lo, hi))
    if len(x) == 0:
        raise DataError("no stage-1 values to place the Born machine's bin edges on")
    grid = np.unique(np.concatenate([[lo, hi], x]))
    ecdf = np.searchsorted(x, grid, side="right") / len(x)
    cdf = (1.0 - mix) * ecdf + mix * (grid - lo) / (hi - lo)
    cdf[0], cdf[-1] = 0.0, 1.0
    edges = np.interp(np.arange(n_bins + 1) / n_bins, cdf, grid)
    edges[0], edges[-1] = lo, hi
    return edges


def fit_born_preprocessing(
    chunks: Callable[[], Iterable[Any]],
    geometry: Geometry,
    config: BornModelConfig,
    *,
    seed: int = 0,
) -> BornStats:
    """Fit the preprocessing (one pass) and the bin edges (a second pass) on the training events.

    The edges are :func:`quantile_edges` of each stage-1 variable over the training events,
    dequantised as in training (layer-energy noise from a generator seeded with ``seed``).
    """
    stats = fit_preprocessing(chunks(), geometry, config.preprocessing)
    bits = config.stage1.bits_for(geometry.n_layers)
    pre = ShowerPreprocessing(geometry, stats).double()
    generator = torch.Generator().manual_seed(seed)
    values = []
    with torch.no_grad():
        for chunk in chunks():
            e_inc = torch.as_tensor(np.asarray(chunk.incident_energies, dtype=np.float64))
            showers = torch.as_tensor(np.asarray(chunk.showers, dtype=np.float64))
            if len(e_inc) == 0:
                continue
            out = pre.forward_showers(
                e_inc.reshape(-1), showers, generator=generator, stages=("stage1",)
            )
            values.append(out["stage1"].numpy())
    y = np.concatenate(values)
    lo, hi = support_bounds(stats.alpha)
    edges = [
        quantile_edges(y[:, i], 2**b, lo, hi, config.stage1.edge_uniform_mix).tolist()
        for i, b in enumerate(bits)
    ]
    return BornStats(stats, edges)
