"""The Born kind (``kind: born``): a Born-machine stage 1 (a circuit's basis-state
probabilities over binned layer energies) and a coupling-flow stage 2.

Config (:mod:`.config`), preprocessing fit with the bin edges (:mod:`.preprocessing`), model
(:mod:`.model`), and the maximum-likelihood objective
(:class:`qcalo.models.likelihood.LikelihoodObjective`), registered as :data:`KIND`.
"""

from __future__ import annotations

from qcalo.models.born.config import BornModelConfig, BornStage1Config
from qcalo.models.born.model import BornMachine, BornShowerModel
from qcalo.models.born.preprocessing import (
    BornStats,
    fit_born_preprocessing,
    quantile_edges,
    support_bounds,
)
from qcalo.models.likelihood import LikelihoodObjective
from qcalo.models.registry import ModelKind

__all__ = [
    "KIND",
    "BornMachine",
    "BornModelConfig",
    "BornShowerModel",
    "BornStage1Config",
    "BornStats",
    "fit_born_preprocessing",
    "quantile_edges",
    "support_bounds",
]

KIND = ModelKind(
    "born",
    BornModelConfig,
    fit_born_preprocessing,
    BornStats.from_dict,
    BornShowerModel,
    LikelihoodObjective,
)
