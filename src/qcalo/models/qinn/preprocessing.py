"""The QINN kind's preprocessing fit: the two-stage preprocessing and the mean and spread of
each stage-1 variable (:func:`fit_qinn_preprocessing`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing, fit_preprocessing
from qcalo.errors import DataError
from qcalo.models.qinn.config import QINNModelConfig

__all__ = ["QINNStats", "fit_qinn_preprocessing"]


@dataclass
class QINNStats:
    """The two-stage preprocessing stats and the mean / spread of each stage-1 variable over
    the training events (the QINN sees standardised variables, so tanh does not saturate)."""

    preprocessing: PreprocessingStats
    mean: list[float]
    std: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"preprocessing": self.preprocessing.to_dict(), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QINNStats:
        if not isinstance(data, dict) or set(data) != {"preprocessing", "mean", "std"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(
                f"QINN stats: expected keys ['mean', 'preprocessing', 'std'], got {got}"
            )
        return cls(
            PreprocessingStats.from_dict(data["preprocessing"]),
            [float(v) for v in data["mean"]],
            [float(v) for v in data["std"]],
        )

    @property
    def e_inc_min(self) -> float:
        return self.preprocessing.e_inc_min

    @property
    def e_inc_max(self) -> float:
        return self.preprocessing.e_inc_max


def fit_qinn_preprocessing(
    chunks: Callable[[], Iterable[Any]], geometry: Geometry, config: QINNModelConfig
) -> QINNStats:
    """Fit the two-stage preprocessing (one pass), then the stage-1 mean and spread (a second
    pass, without dequantisation noise)."""
    stats = fit_preprocessing(chunks(), geometry, config.preprocessing)
    pre = ShowerPreprocessing(geometry, stats).double()
    total = torch.zeros(geometry.n_layers, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    n = 0
    with torch.no_grad():
        for chunk in chunks():
            e_inc = torch.as_tensor(np.asarray(chunk.incident_energies, dtype=np.float64))
            if e_inc.numel() == 0:
                continue
            showers = torch.as_tensor(np.asarray(chunk.showers, dtype=np.float64))
            y = pre.forward_showers(
                e_inc.reshape(-1), showers, dequantize=False, stages=("stage1",)
            )["stage1"]
            y = y[torch.isfinite(y).all(dim=1)]
            total += y.sum(dim=0)
            total_sq += (y**2).sum(dim=0)
            n += y.shape[0]
    if n < 2:
        raise DataError("the QINN preprocessing needs at least two training events")
    mean = total / n
    std = (total_sq / n - mean**2).clamp_min(1e-12).sqrt()
    return QINNStats(stats, mean.tolist(), std.tolist())
