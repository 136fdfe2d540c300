"""The flow kind (``kind: flow``, the default): a two-stage conditional coupling flow whose
stages have mlp, quantum, hybrid, full-quantum or trig conditioners.

The package is the kind: its config (:mod:`.config`), its preprocessing fit (the two-stage
preprocessing, :func:`qcalo.data.preprocessing.fit_preprocessing`), its model (:mod:`.model`)
and its objective (maximum likelihood, :class:`qcalo.models.likelihood.LikelihoodObjective`),
registered as :data:`KIND`.
"""

from __future__ import annotations

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import PreprocessingStats, fit_preprocessing
from qcalo.models.flow.config import ModelConfig, parse_model_config
from qcalo.models.flow.model import ShowerFlow
from qcalo.models.likelihood import LikelihoodObjective
from qcalo.models.registry import Chunks, ModelKind

__all__ = ["KIND", "ModelConfig", "ShowerFlow", "fit_flow_preprocessing", "parse_model_config"]


def fit_flow_preprocessing(
    chunks: Chunks, geometry: Geometry, config: ModelConfig
) -> PreprocessingStats:
    """The two-stage preprocessing fitted on the training events (one pass)."""
    return fit_preprocessing(chunks(), geometry, config.preprocessing)


KIND = ModelKind(
    "flow",
    ModelConfig,
    fit_flow_preprocessing,
    PreprocessingStats.from_dict,
    ShowerFlow,
    LikelihoodObjective,
)
