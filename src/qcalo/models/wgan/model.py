"""The WGAN-GP as a model kind (``kind: wgan``): config, preprocessing fit, and the
:class:`qcalo.models.ShowerGenerator` that generation, timing and evaluation use.

The networks, losses and the WGAN-GP stepper are in :mod:`qcalo.models.wgan.gan`; the training
objective that steps the generator's and the critic's optimisers is
:class:`qcalo.models.wgan.objective.WGANObjective`.

Example::

    >>> import torch
    >>> from qcalo.data.geometry import load_geometry
    >>> photons = load_geometry("photons")
    >>> stats = GANPreprocessing(256.0, 65536.0)
    >>> model = WGANShowerModel(WGANModelConfig(module="classical"), photons, stats)
    >>> showers = model.sample(torch.tensor([1024.0, 65536.0]))
    >>> showers.shape, bool((showers >= 0).all())
    (torch.Size([2, 368]), True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from qcalo.data.geometry import Geometry
from qcalo.data.io import ShowerData
from qcalo.errors import DataError
from qcalo.models.noise import NoiseInput, check_noise, draw_noise
from qcalo.models.wgan.gan import WGAN, GANPreprocessing, WGANConfig
from qcalo.quantum.registry import circuit_parameters, named_circuits

__all__ = ["WGANModelConfig", "WGANShowerModel", "fit_wgan_preprocessing"]


class WGANModelConfig(WGANConfig):
    """The ``model:`` section of a WGAN-GP run: :class:`qcalo.models.wgan.gan.WGANConfig`'s fields
    and ``kind: wgan``."""

    kind: Literal["wgan"] = "wgan"


def fit_wgan_preprocessing(
    chunks: Callable[[], Iterable[ShowerData]], geometry: Geometry, config: WGANModelConfig
) -> GANPreprocessing:
    """The incident-energy range of the training events (the condition's scale)."""
    low, high = np.inf, -np.inf
    for chunk in chunks():
        e_inc = np.asarray(chunk.incident_energies, dtype=np.float64).reshape(-1)
        if len(e_inc):
            low, high = min(low, float(e_inc.min())), max(high, float(e_inc.max()))
    if not np.isfinite(low):
        raise DataError("no training events to fit the WGAN preprocessing on")
    if high <= low:  # one energy: any positive range keeps the condition finite
        high = low * 2.0
    return GANPreprocessing(low, high)


class WGANShowerModel(nn.Module):
    """Generator, critic and preprocessing of a WGAN-GP; a :class:`ShowerGenerator`.

    ``wgan`` holds ``generator`` and ``critic``; only the generator is used to sample, so
    :meth:`parameter_counts` counts the generator (``critic`` reports the critic's size).
    """

    def __init__(self, config: WGANModelConfig, geometry: Geometry, stats: GANPreprocessing):
        super().__init__()
        if not isinstance(stats, GANPreprocessing):
            raise DataError(
                f"a WGAN model needs GANPreprocessing stats, got {type(stats).__name__}"
            )
        self.config = config
        self.geometry = geometry
        self.stats = stats
        self.wgan = WGAN(config, geometry.n_voxels)

    @property
    def generator(self) -> nn.Module:
        return self.wgan.generator

    @property
    def critic(self) -> nn.Module:
        return self.wgan.critic

    def _weight(self) -> Tensor:
        return self.wgan.generator.out.weight

    def model_space(self, incident_energies: Tensor, showers: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) MeV and (B, V) MeV → (x = showers/E_inc (B, V), condition (B, 1)), model dtype."""
        weight = self._weight()
        e = torch.as_tensor(incident_energies).reshape(-1).to(weight.device, torch.float64)
        x = self.stats.forward(torch.as_tensor(showers).to(weight.device, torch.float64), e)
        return x.to(weight.dtype), self.stats.condition(e).to(weight.dtype)

    @torch.no_grad()
    def sample(self, incident_energies: Tensor) -> Tensor:
        """(B,) MeV → showers (B, V) MeV (≥ 0 with the ReLU output); noise from torch's global
        RNG, the generator in eval mode (BatchNorm running statistics)."""
        e = torch.as_tensor(incident_energies).reshape(-1)
        return self.sample_from_noise(e, self.draw_noise(e.shape[0]))

    def noise_contract(self) -> tuple[NoiseInput, ...]:
        """``z`` (B, noise_dim) ~ N(0, 1), the generator's input noise."""
        return (
            NoiseInput(
                "z",
                self.wgan.generator.noise_dim,
                "normal",
                "generator input noise",
                draw_on_cpu=True,
            ),
        )

    def draw_noise(self, batch: int) -> dict[str, Tensor]:
        """The contract's tensors for ``batch`` events from torch's global RNG."""
        weight = self._weight()
        return draw_noise(self.noise_contract(), batch, dtype=weight.dtype, device=weight.device)

    @torch.no_grad()
    def sample_from_noise(self, incident_energies: Tensor, noise: Mapping[str, Tensor]) -> Tensor:
        """(B,) MeV and ``z`` (B, noise_dim) → showers (B, V) MeV, ≥ 0; the generator in eval
        mode (BatchNorm running statistics), its mode restored."""
        weight = self._weight()
        e = torch.as_tensor(incident_energies).reshape(-1).to(weight.device, torch.float64)
        if e.numel() and not bool(torch.all(e > 0)):
            raise DataError("incident energies must be > 0 MeV (and not NaN)")
        check_noise(self.noise_contract(), noise, e.shape[0])
        cond = self.stats.condition(e).to(weight.dtype)
        generator = self.wgan.generator
        was_training = generator.training
        generator.eval()
        try:
            x = generator(noise["z"].to(weight.device, weight.dtype), cond)
        finally:
            generator.train(was_training)
        return self.stats.inverse(x.double(), e).clamp_min(0.0).to(weight.dtype)

    def parameter_counts(self) -> dict[str, int]:
        """The generator's {"classical", "quantum", "total"} and the critic's size ("critic")."""
        generator = self.wgan.generator
        total = sum(p.numel() for p in generator.parameters())
        quantum = sum(p.numel() for p in circuit_parameters(generator))
        critic = sum(p.numel() for p in self.wgan.critic.parameters())
        return {"classical": total - quantum, "quantum": quantum, "total": total, "critic": critic}

    def incident_energy_range(self) -> tuple[float, float]:
        return float(self.stats.e_min), float(self.stats.e_max)

    def named_circuits(self) -> list[tuple[str, nn.Module]]:

        return named_circuits(self)


def wgan_stats_from_dict(data: dict[str, Any]) -> GANPreprocessing:
    return GANPreprocessing.from_dict(data)
