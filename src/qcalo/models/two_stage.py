"""The two-stage composition every two-stage kind shares (CaloFlow, Krause & Shih 2021,
arXiv:2106.05285): preprocessing, a stage 1 given as an argument, a coupling-flow stage 2,
densities and sampling.

* Stage 1 models p(layer energies | E_inc) over the L preprocessed u-space layer energies
  (5 for photons, 7 for pions) with the condition c(E_inc) (B, 1): a coupling flow
  (:class:`qcalo.models.flow.ShowerFlow`), a Born machine (:class:`qcalo.models.born.BornShowerModel`)
  or a QINN (:class:`qcalo.models.qinn.QINNShowerModel`); any module with
  ``log_prob(y (B, L), condition (B, 1)) -> (B,)``.
* Stage 2 models p(voxel fractions | layer energies, E_inc) over the V preprocessed fractions
  with context = [c(E_inc), stage-1 variables] (B, 1 + L), normalised by fixed statistics taken
  from the first training batch: one coupling flow over all V (``stage2_layout: joint``, the
  default) or one per calorimeter layer, each also conditioned on the layers before it
  (``stage2_layout: layerwise``, :class:`qcalo.models.blocks.layerwise.LayerwiseStage2`).

Sampling chains them: E_inc → stage 1 → layer energies → stage 2 → fractions → showers whose
layer sums equal the stage-1 energies (see :mod:`qcalo.data.preprocessing`).

Log-densities (``log_prob``) are in nats per event. ``space="preprocessed"`` (default, what
training minimises) is the density of the flows' inputs (logit u-space for stage 1, logit
fractions for stage 2); ``space="data"`` adds the preprocessing log-dets, giving the density
of the dequantised layer energies in MeV (stage 1) and of the dequantised voxel fractions
(stage 2). The two differ by a term that does not depend on the model's weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing
from qcalo.errors import ConfigError, DataError
from qcalo.models.blocks.flow import build_flow, count_parameters
from qcalo.models.blocks.layerwise import FixedNorm, LayerwiseStage2
from qcalo.models.blocks.transforms import ConditionalFlow
from qcalo.models.noise import NoiseInput, check_noise, draw_noise
from qcalo.quantum import registry as circuit_registry

__all__ = ["SAMPLE_CHUNK", "TwoStageShowerModel", "build_stage2"]


# Events decoded at once by ShowerFlow.sample on CPU (see sample_with_layer_energies): a
# stage-2 block's spline parameters are 256 x 184 x 23 floats (4.3 MB) at 256, near the 2 MB
# L2 per core, 17 MB at 1024. Measured at batch 10,000 (same run, load 7-9; classical /
# hybrid twin): 1 thread, CPU ms/shower 0.175 / 0.238 at 256, 0.198 / 0.265 at 512, 0.239 /
# 0.288 at 1024; 2 threads (OMP_WAIT_POLICY=PASSIVE), wall 0.188 / 0.375 at 256, 0.229 / 0.378
# at 1024.
SAMPLE_CHUNK = 256


def build_stage2(config: Any, geometry: Geometry) -> ConditionalFlow | LayerwiseStage2:
    """Stage 2 as ``config.stage2_layout`` says (``joint`` when the config has no such field).

    ``joint``: one :class:`ConditionalFlow` over the V fractions, context (B, 1 + L);
    ``layerwise``: a :class:`LayerwiseStage2`, one flow per layer built from ``config.stage2``,
    whose layer l ≥ 1 also sees a ``config.stage2_embedding``-wide embedding of layers < l.
    Both map (y (B, V), context (B, 1 + L)) → (z (B, V), log-det (B,)) and back.
    """
    n_layers, n_voxels = geometry.n_layers, geometry.n_voxels
    layout = getattr(config, "stage2_layout", "joint")
    if layout == "layerwise":
        sizes = [s.stop - s.start for s in geometry.layer_slices]
        return LayerwiseStage2(
            config.stage2, sizes, 1 + n_layers, embedding=int(config.stage2_embedding)
        )
    if layout != "joint":
        raise ConfigError(f"model.stage2_layout must be 'joint' or 'layerwise', got {layout!r}")
    return build_flow(config.stage2, n_voxels, 1 + n_layers, seed=2, name="model.stage2")


class TwoStageShowerModel(nn.Module):
    """What every two-stage model shares: preprocessing, a flow stage 2, densities, sampling.

    ``stage1`` is any module with ``log_prob(y (B, L), condition (B, 1)) -> (B,)`` over the
    preprocessed stage-1 variables (a :class:`ConditionalFlow` in :class:`ShowerFlow`, a Born
    machine in :class:`qcalo.models.BornShowerModel`); stage 2 is a coupling flow
    ``config.stage2`` over the voxel fractions, or one per layer (:func:`build_stage2`). Subclasses define the noise their stage 1
    consumes (``stage1_noise_contract``) and ``sample_from_noise_with_layer_energies``; sampling
    draws the noise (:meth:`noise_contract`, :mod:`qcalo.models.noise`) and calls the latter.
    A :class:`ShowerGenerator`.

    Attributes: ``geometry``, ``config``, ``stats`` (:class:`PreprocessingStats`),
    ``preprocessing``, ``stage1``, ``stage2`` (:class:`ConditionalFlow` or
    :class:`LayerwiseStage2`).
    """

    def __init__(
        self, config: Any, geometry: Geometry, stats: PreprocessingStats, stage1: nn.Module
    ) -> None:
        super().__init__()
        self.config = config
        self.geometry = geometry
        self.stats = stats
        self.preprocessing = ShowerPreprocessing(geometry, stats)
        self.stage1: Any = stage1  # log_prob(y, condition); each subclass narrows the type
        self.stage2 = build_stage2(config, geometry)
        self.context_norm = FixedNorm(1 + geometry.n_layers)

    # ----- helpers -----
    @property
    def _ref(self) -> Tensor:
        """A stage-2 weight: the device and dtype the model runs in."""
        return next(self.stage2.parameters())

    def _as_model_tensor(self, values: Tensor) -> Tensor:
        ref = self._ref
        return torch.as_tensor(values).to(device=ref.device, dtype=ref.dtype)

    def _energies(self, incident_energies: Tensor) -> Tensor:
        e_inc = self._as_model_tensor(incident_energies)
        if e_inc.dim() == 2 and e_inc.shape[1] == 1:
            e_inc = e_inc[:, 0]
        if e_inc.dim() != 1:
            raise DataError(
                f"incident energies have shape {tuple(e_inc.shape)}; expected (B,) or (B, 1) in MeV"
            )
        if not bool(torch.all(e_inc > 0)):
            raise DataError("incident energies must be > 0 MeV (and not NaN)")
        return e_inc

    def _showers(self, showers: Tensor, batch: int) -> Tensor:
        showers = self._as_model_tensor(showers)
        if showers.shape != (batch, self.geometry.n_voxels):
            raise DataError(
                f"showers have shape {tuple(showers.shape)}; expected ({batch}, {self.geometry.n_voxels}) "
                f"for {batch} incident energies and geometry {self.geometry.name!r}"
            )
        return showers

    def stage2_context(self, condition: Tensor, stage1_variables: Tensor) -> Tensor:
        """(B, 1) condition and (B, L) stage-1 variables → normalised stage-2 context (B, 1 + L)."""
        return self.context_norm(torch.cat([condition, stage1_variables], dim=1))

    # ----- densities -----
    def log_prob(
        self,
        incident_energies: Tensor,
        showers: Tensor,
        *,
        space: str = "preprocessed",
        stages: tuple[str, ...] = ("stage1", "stage2"),
    ) -> dict[str, Tensor]:
        """Log-density per event, nats: {"stage1", "stage2", "total"}, each (B,).

        ``incident_energies`` (B,) MeV, ``showers`` (B, V) MeV. Dequantisation noise is drawn
        from torch's global RNG. ``space``: see the module docstring. ``stages`` restricts the
        work to one stage (e.g. ``("stage1",)`` to train stage 1 alone); a skipped stage reads 0.
        """
        if space not in ("preprocessed", "data"):
            raise ValueError(f"space must be 'preprocessed' or 'data', got {space!r}")
        if not stages or set(stages) - {"stage1", "stage2"}:
            raise ValueError(
                f"stages must be a non-empty subset of ('stage1', 'stage2'), got {stages!r}"
            )
        e_inc = self._energies(incident_energies)
        showers = self._showers(showers, e_inc.shape[0])
        pre = self.preprocessing.forward_showers(e_inc, showers, stages=stages)
        zero = e_inc.new_zeros(e_inc.shape[0])
        stage1 = stage2 = zero
        if "stage1" in stages:
            stage1 = self.stage1.log_prob(pre["stage1"], pre["condition"])
            if space == "data":
                stage1 = stage1 + pre["stage1_ladj"]
            else:  # outside the preprocessing's support (E_tot > f·E_inc) the density is 0 here too
                stage1 = torch.where(
                    torch.isfinite(pre["stage1_ladj"]), stage1, torch.full_like(stage1, -math.inf)
                )
        if "stage2" in stages:
            context = self.stage2_context(pre["condition"], pre["stage1"])
            stage2 = self.stage2.log_prob(pre["stage2"], context)
            if space == "data":
                stage2 = stage2 + pre["stage2_ladj"]
        return {"stage1": stage1, "stage2": stage2, "total": stage1 + stage2}

    @torch.no_grad()
    def sample(self, incident_energies: Tensor) -> Tensor:
        """(B,) MeV → showers (B, V) MeV, every voxel ≥ 0, layer sums = stage-1 energies."""
        return self.sample_with_layer_energies(incident_energies)[0]

    # ----- the noise contract (qcalo.models.noise) -----
    def stage1_noise_contract(self) -> tuple[NoiseInput, ...]:
        """The noise stage 1 consumes, drawn before stage 2's ``z_voxels``."""
        raise NotImplementedError

    def noise_contract(self) -> tuple[NoiseInput, ...]:
        """Stage 1's noise, then ``z_voxels`` (B, V) ~ N(0, 1), the stage-2 latent."""
        z_voxels = NoiseInput(
            "z_voxels",
            self.geometry.n_voxels,
            "normal",
            "stage-2 latent: decoded by the stage-2 flow into the voxel fractions of each layer",
        )
        return (*self.stage1_noise_contract(), z_voxels)

    def draw_noise(self, batch: int) -> dict[str, Tensor]:
        """The contract's tensors for ``batch`` events from torch's global RNG, in order."""
        ref = self._ref
        return draw_noise(self.noise_contract(), batch, dtype=ref.dtype, device=ref.device)

    @torch.no_grad()
    def sample_from_noise(self, incident_energies: Tensor, noise: Mapping[str, Tensor]) -> Tensor:
        """(B,) MeV and the contract's noise (name → (B, width)) → showers (B, V) MeV, every
        voxel ≥ 0; what :meth:`sample` computes after drawing the noise."""
        return self.sample_from_noise_with_layer_energies(incident_energies, noise)[0]

    def sample_from_noise_with_layer_energies(
        self, incident_energies: Tensor, noise: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(showers (B, V) MeV, stage-1 layer energies (B, L) MeV) from the given noise."""
        raise NotImplementedError

    def sample_with_layer_energies(self, incident_energies: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) MeV → (showers (B, V) MeV, the stage-1 layer energies (B, L) MeV they sum to)."""
        e_inc = self._energies(incident_energies)
        return self.sample_from_noise_with_layer_energies(e_inc, self.draw_noise(e_inc.shape[0]))

    def _noise(self, noise: Mapping[str, Tensor], batch: int) -> dict[str, Tensor]:
        """The noise checked against the contract, in the model's dtype unless drawn otherwise."""
        contract = self.noise_contract()
        check_noise(contract, noise, batch)
        ref = self._ref
        return {
            e.name: noise[e.name].to(device=ref.device, dtype=e.draw_dtype or ref.dtype)
            for e in contract
        }

    def parameter_counts(self) -> dict[str, int]:
        """{"classical", "quantum", "total"}: quantum = circuit rotation / entangler weights; and
        the same per stage, ``stage1_classical`` ... ``stage2_total`` (a stage-1 study plots
        against ``stage1_total``)."""
        counts = count_parameters(self)
        for stage in ("stage1", "stage2"):
            for key, value in count_parameters(getattr(self, stage)).items():
                counts[f"{stage}_{key}"] = value
        return counts

    def incident_energy_range(self) -> tuple[float, float]:
        """(lowest, highest) incident energy, MeV, of the events the preprocessing was fitted on."""
        return float(self.stats.e_inc_min), float(self.stats.e_inc_max)

    def named_circuits(self) -> list[tuple[str, nn.Module]]:
        """Every circuit in the model as (dotted module name, ``QuantumLayer`` | ``OrthogonalCircuit``),
        e.g. for state capture or per-circuit plots; conditioner circuits end in ``.features.circuit``."""
        return circuit_registry.named_circuits(self)

    def decode_stage2(
        self, incident_energies: Tensor, y1: Tensor, z2: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Stage-1 variables (B, L) and stage-2 latents (B, V) → (showers (B, V) MeV, layer
        energies (B, L) MeV), in chunks of :data:`SAMPLE_CHUNK` events on CPU."""
        e_inc = self._energies(incident_energies)
        if e_inc.shape[0] > SAMPLE_CHUNK and self._ref.device.type == "cpu":
            parts = [
                self.decode_stage2(
                    e_inc[i : i + SAMPLE_CHUNK], y1[i : i + SAMPLE_CHUNK], z2[i : i + SAMPLE_CHUNK]
                )
                for i in range(0, e_inc.shape[0], SAMPLE_CHUNK)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        condition = self.preprocessing.condition(e_inc)
        e_layer = self.preprocessing.energies_inverse(y1, e_inc)
        y2 = self.stage2.inverse(z2, self.stage2_context(condition, y1))
        return self.preprocessing.fractions_to_showers(y2, e_layer), e_layer
