"""The QINN kind (``kind: qinn``): a quantum invertible neural network as stage 1 (Rousselot &
Spannowsky 2024, arXiv:2302.12906) and a coupling-flow stage 2.

Config (:mod:`.config`), preprocessing fit (:mod:`.preprocessing`), model (:mod:`.model`) and
objective (the likelihood plus the QINN's MMD and reconstruction terms, :mod:`.objective`),
registered as :data:`KIND`.
"""

from __future__ import annotations

from qcalo.models.qinn.config import QINNConfig, QINNModelConfig
from qcalo.models.qinn.model import (
    QINN,
    QINNShowerModel,
    QINNStage1,
    mmd_to_normal,
    qinn_losses,
    qinn_training_terms,
)
from qcalo.models.qinn.objective import QINNObjective
from qcalo.models.qinn.preprocessing import QINNStats, fit_qinn_preprocessing
from qcalo.models.registry import ModelKind

__all__ = [
    "KIND",
    "QINN",
    "QINNConfig",
    "QINNModelConfig",
    "QINNObjective",
    "QINNShowerModel",
    "QINNStage1",
    "QINNStats",
    "fit_qinn_preprocessing",
    "mmd_to_normal",
    "qinn_losses",
    "qinn_training_terms",
]

KIND = ModelKind(
    "qinn",
    QINNModelConfig,
    fit_qinn_preprocessing,
    QINNStats.from_dict,
    QINNShowerModel,
    QINNObjective,
)
