"""The WGAN kind (``kind: wgan``): FastCaloQ's WGAN-GP with a quantum or classical module.

The networks, losses and WGAN-GP stepper (:mod:`.gan`), the kind's config, preprocessing fit and
:class:`qcalo.models.ShowerGenerator` (:mod:`.model`), and its objective, which steps the
generator's and the critic's optimisers itself (:mod:`.objective`), registered as :data:`KIND`.
"""

from __future__ import annotations

from qcalo.models.registry import ModelKind
from qcalo.models.wgan.gan import (
    CLASSICAL_WGAN,
    FASTCALOQ_WGAN,
    MONITOR,
    WGAN,
    WGAN_PRESETS,
    ClassicalModule,
    Critic,
    GANPreprocessing,
    Generator,
    QuantumModule,
    WGANConfig,
    WGANGPStepper,
    build_wgan,
    circuit_weight_count,
    classical_hidden_width,
    critic_loss,
    generator_loss,
    gradient_penalty,
    sample,
    sample_showers,
    validation_distance,
    validation_distances,
    wasserstein_1d,
)
from qcalo.models.wgan.model import WGANModelConfig, WGANShowerModel, fit_wgan_preprocessing
from qcalo.models.wgan.objective import WGANObjective

__all__ = [
    "CLASSICAL_WGAN",
    "FASTCALOQ_WGAN",
    "KIND",
    "MONITOR",
    "WGAN",
    "WGAN_PRESETS",
    "ClassicalModule",
    "Critic",
    "GANPreprocessing",
    "Generator",
    "QuantumModule",
    "WGANConfig",
    "WGANGPStepper",
    "WGANModelConfig",
    "WGANObjective",
    "WGANShowerModel",
    "build_wgan",
    "circuit_weight_count",
    "classical_hidden_width",
    "critic_loss",
    "fit_wgan_preprocessing",
    "generator_loss",
    "gradient_penalty",
    "sample",
    "sample_showers",
    "validation_distance",
    "validation_distances",
    "wasserstein_1d",
]

KIND = ModelKind(
    "wgan",
    WGANModelConfig,
    fit_wgan_preprocessing,
    GANPreprocessing.from_dict,
    WGANShowerModel,
    WGANObjective,
)
