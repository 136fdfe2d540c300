"""Shower models: invertible preprocessing, conditional coupling flows with mlp / quantum /
hybrid conditioners, the quantum mixer, the two-stage :class:`ShowerFlow` and the Born-machine
stage 1 (:class:`BornShowerModel`).

Public API::

    ModelConfig, FlowConfig, PreprocessingConfig, CircuitConfig, parse_model_config
    PreprocessingStats, fit_preprocessing(chunks, geometry, config) -> PreprocessingStats
    build_model(config, geometry, stats) -> ShowerFlow | BornShowerModel (by config.kind)
    BornModelConfig, BornStats, fit_born_preprocessing(chunks, geometry, config) -> BornStats
    ShowerFlow.log_prob(e_inc, showers) -> {"stage1", "stage2", "total"}; .sample(e_inc); .parameter_counts()
    ShowerGenerator (the protocol every shower model implements)
"""

from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing, fit_preprocessing
from qcalo.models.born import (
    BornMachine,
    BornModelConfig,
    BornShowerModel,
    BornStage1Config,
    BornStats,
    fit_born_preprocessing,
)
from qcalo.models.config import (
    CircuitConfig,
    FlowConfig,
    ModelConfig,
    PreprocessingConfig,
    format_validation_error,
    parse_model_config,
)
from qcalo.models.generator import ShowerGenerator
from qcalo.models.shower_flow import (
    ShowerFlow,
    TwoStageShowerModel,
    build_flow,
    build_model,
    count_parameters,
)

__all__ = [
    "BornMachine",
    "BornModelConfig",
    "BornShowerModel",
    "BornStage1Config",
    "BornStats",
    "TwoStageShowerModel",
    "fit_born_preprocessing",
    "CircuitConfig",
    "FlowConfig",
    "ModelConfig",
    "PreprocessingConfig",
    "PreprocessingStats",
    "ShowerFlow",
    "ShowerGenerator",
    "ShowerPreprocessing",
    "build_flow",
    "build_model",
    "count_parameters",
    "fit_preprocessing",
    "format_validation_error",
    "parse_model_config",
]
