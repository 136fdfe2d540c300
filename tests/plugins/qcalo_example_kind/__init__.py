"""An example third-party model kind, ``example_flow``: what docs/plugins.md walks through.

A kind brings a config type (its ``kind`` a one-value Literal), a preprocessing fit, a builder
and an objective. To stay small this one reuses qcalo's pieces (the two-stage flow's fields,
preprocessing, model class and maximum-likelihood objective) under its own name; a real
plug-in brings its own model class (a ``ShowerGenerator``) and, if it needs one, objective.
It is found through ``qcalo_example_kind-0.1.dist-info/entry_points.txt`` when its folder is on
``sys.path``, exactly as if it had been installed with pip.
"""

from __future__ import annotations

from typing import Any, Literal

from qcalo.data.preprocessing import PreprocessingStats, fit_preprocessing
from qcalo.models import ModelConfig
from qcalo.models.flow import ShowerFlow
from qcalo.models.likelihood import LikelihoodObjective
from qcalo.models.registry import ModelKind


class ExampleFlowConfig(ModelConfig):
    """The ``model:`` section of kind ``example_flow`` (the flow's fields, another name)."""

    kind: Literal["example_flow"] = "example_flow"  # type: ignore[assignment]


def fit(chunks: Any, geometry: Any, config: ExampleFlowConfig) -> PreprocessingStats:
    return fit_preprocessing(chunks(), geometry, config.preprocessing)


KIND = ModelKind(
    "example_flow",
    ExampleFlowConfig,
    fit,
    PreprocessingStats.from_dict,
    ShowerFlow,
    LikelihoodObjective,
)
