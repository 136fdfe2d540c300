"""Shower models. Each model kind is one package — its config, preprocessing fit, model and
objective, registered as ``KIND`` — and :mod:`qcalo.models.registry` is the one registry:

* :mod:`qcalo.models.flow` (``kind: flow``): the two-stage coupling flow (:class:`ShowerFlow`);
* :mod:`qcalo.models.born` (``kind: born``): Born-machine stage 1 (:class:`BornShowerModel`);
* :mod:`qcalo.models.qinn` (``kind: qinn``): quantum invertible network stage 1;
* :mod:`qcalo.models.wgan` (``kind: wgan``): FastCaloQ's WGAN-GP;
* third-party kinds through the entry-point group ``qcalo.kinds`` (docs/plugins.md).

Shared pieces: :mod:`qcalo.models.blocks` (splines, couplings, conditioners, flow and circuit
configs), :mod:`qcalo.models.two_stage` (the two-stage composition Born and QINN reuse, with
stage 1 an argument), :mod:`qcalo.models.objective` (the :class:`Objective` interface and the
optimiser settings) and :mod:`qcalo.models.likelihood` (maximum likelihood).

Public API::

    ModelConfig, FlowConfig, PreprocessingConfig, CircuitConfig, parse_model_config
    PreprocessingStats, fit_preprocessing(chunks, geometry, config) -> PreprocessingStats
    build_model(config, geometry, stats) -> the config's kind's model (the registry's builder)
    ShowerFlow.log_prob(e_inc, showers) -> {"stage1", "stage2", "total"}; .sample(e_inc); .parameter_counts()
    ShowerGenerator (the protocol every shower model implements)
    ModelKind, register_kind, model_kind, Objective, Optimisation (for new kinds)
"""

from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing, fit_preprocessing
from qcalo.models.blocks.config import CircuitConfig, FlowConfig, PreprocessingConfig
from qcalo.models.blocks.flow import build_flow, count_parameters
from qcalo.models.born import (
    BornMachine,
    BornModelConfig,
    BornShowerModel,
    BornStage1Config,
    BornStats,
    fit_born_preprocessing,
)
from qcalo.models.flow import ModelConfig, ShowerFlow, parse_model_config
from qcalo.models.generator import ShowerGenerator
from qcalo.models.likelihood import LikelihoodObjective
from qcalo.models.objective import Objective, Optimisation, TrainingDiverged
from qcalo.models.registry import ModelKind, build_model, model_kind, register_kind
from qcalo.models.two_stage import TwoStageShowerModel
from qcalo.utils.validation import format_validation_error

__all__ = [
    "BornMachine",
    "BornModelConfig",
    "BornShowerModel",
    "BornStage1Config",
    "BornStats",
    "CircuitConfig",
    "FlowConfig",
    "LikelihoodObjective",
    "ModelConfig",
    "ModelKind",
    "Objective",
    "Optimisation",
    "PreprocessingConfig",
    "PreprocessingStats",
    "ShowerFlow",
    "ShowerGenerator",
    "ShowerPreprocessing",
    "TrainingDiverged",
    "TwoStageShowerModel",
    "build_flow",
    "build_model",
    "count_parameters",
    "fit_born_preprocessing",
    "fit_preprocessing",
    "format_validation_error",
    "model_kind",
    "parse_model_config",
    "register_kind",
]
