"""Shower models: invertible preprocessing, conditional coupling flows with mlp / quantum /
hybrid conditioners, the quantum mixer and the two-stage :class:`ShowerFlow`."""

from qcalo.models.config import (
    CircuitConfig,
    FlowConfig,
    ModelConfig,
    PreprocessingConfig,
    format_validation_error,
    parse_model_config,
)

__all__ = [
    "CircuitConfig",
    "FlowConfig",
    "ModelConfig",
    "PreprocessingConfig",
    "format_validation_error",
    "parse_model_config",
]
