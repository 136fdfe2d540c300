"""The flow kind's model: a two-stage conditional coupling flow (CaloFlow, Krause & Shih 2021,
arXiv:2106.05285) whose stage 1 is a coupling flow over the layer energies; see
:mod:`qcalo.models.two_stage` for the composition, its spaces and units.

Example::

    >>> import torch
    >>> from qcalo.data.geometry import load_geometry
    >>> from qcalo.models import ModelConfig, PreprocessingStats
    >>> g = load_geometry("photons")
    >>> stats = PreprocessingStats(e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.1, n_layers=5, n_voxels=368)
    >>> model = ShowerFlow(ModelConfig(), g, stats)
    >>> _ = torch.manual_seed(0)
    >>> showers = model.sample(torch.full((4,), 1024.0))
    >>> showers.shape, bool((showers >= 0).all())
    (torch.Size([4, 368]), True)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import PreprocessingStats
from qcalo.models import two_stage
from qcalo.models.blocks.flow import build_flow
from qcalo.models.blocks.transforms import ConditionalFlow
from qcalo.models.flow.config import ModelConfig
from qcalo.models.noise import NoiseInput
from qcalo.models.two_stage import TwoStageShowerModel

__all__ = ["ShowerFlow"]


class ShowerFlow(TwoStageShowerModel):
    """Two-stage conditional flow over showers of one geometry; a :class:`ShowerGenerator`.

    Attributes: ``geometry``, ``config`` (:class:`ModelConfig`), ``stats``
    (:class:`PreprocessingStats`), ``preprocessing``, ``stage1`` and ``stage2``
    (:class:`ConditionalFlow`).
    """

    stage1: ConditionalFlow

    def __init__(self, config: ModelConfig, geometry: Geometry, stats: PreprocessingStats) -> None:
        # Stage 1 is built first (its weights are the first draws from torch's RNG).
        stage1 = build_flow(config.stage1, geometry.n_layers, 1, seed=1, name="model.stage1")
        super().__init__(config, geometry, stats, stage1)

    def encode(
        self, incident_energies: Tensor, showers: Tensor, *, dequantize: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Showers → latent points (z1 (B, L), z2 (B, V)); :meth:`decode` inverts it."""
        e_inc = self._energies(incident_energies)
        pre = self.preprocessing.forward_showers(
            e_inc, self._showers(showers, e_inc.shape[0]), dequantize=dequantize
        )
        z1, _ = self.stage1(pre["stage1"], pre["condition"])
        z2, _ = self.stage2(pre["stage2"], self.stage2_context(pre["condition"], pre["stage1"]))
        return z1, z2

    def decode(self, incident_energies: Tensor, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        """Latent points → (showers (B, V) MeV, layer energies (B, L) MeV); sampling decodes N(0, I)."""
        e_inc = self._energies(incident_energies)
        condition = self.preprocessing.condition(e_inc)
        y1 = self.stage1.inverse(z1, condition)
        e_layer = self.preprocessing.energies_inverse(y1, e_inc)
        y2 = self.stage2.inverse(z2, self.stage2_context(condition, y1))
        return self.preprocessing.fractions_to_showers(y2, e_layer), e_layer

    # ----- sampling -----
    def stage1_noise_contract(self) -> tuple[NoiseInput, ...]:
        """``z_layers`` (B, L) ~ N(0, 1), the stage-1 latent."""
        return (
            NoiseInput(
                "z_layers",
                self.geometry.n_layers,
                "normal",
                "stage-1 latent: decoded by the stage-1 flow into the layer energies",
            ),
        )

    def sample_from_noise_with_layer_energies(
        self, incident_energies: Tensor, noise: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(B,) MeV, ``z_layers`` (B, L) and ``z_voxels`` (B, V) → (showers (B, V) MeV, the
        stage-1 layer energies (B, L) MeV they sum to): :meth:`decode` of the latents."""
        e_inc = self._energies(incident_energies)
        z = self._noise(noise, e_inc.shape[0])
        z1, z2 = z["z_layers"], z["z_voxels"]
        if e_inc.shape[0] <= two_stage.SAMPLE_CHUNK or self._ref.device.type != "cpu":
            return self.decode(e_inc, z1, z2)
        # On CPU, decoding a few hundred showers at a time keeps the spline intermediates in cache
        # (two_stage.SAMPLE_CHUNK; 1k chunks: 0.44 vs 1.0 ms/shower at batch 10k for hybrid_photons
        # on 2 threads against no chunking). Latents are drawn first, so the samples do not depend
        # on the chunking beyond float rounding of the matrix products.
        parts = [
            self.decode(
                e_inc[i : i + two_stage.SAMPLE_CHUNK],
                z1[i : i + two_stage.SAMPLE_CHUNK],
                z2[i : i + two_stage.SAMPLE_CHUNK],
            )
            for i in range(0, e_inc.shape[0], two_stage.SAMPLE_CHUNK)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
