"""The interface every shower model implements (today: the coupling flows).

Born machines and the seed's WGAN-GP baseline (DESIGN.md §3) are planned as peers behind this
same interface; they are not implemented yet.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from qcalo.data.geometry import Geometry

__all__ = ["ShowerGenerator"]


@runtime_checkable
class ShowerGenerator(Protocol):
    """A trained model that turns incident energies into showers.

    Implemented by :class:`qcalo.models.ShowerFlow` (two-stage coupling flow). Generation, timing
    and evaluation code use only these three members, so the planned Born machine and WGAN-GP
    generators will plug in unchanged.

    * ``geometry``: the :class:`qcalo.data.geometry.Geometry` whose voxels the showers fill.
    * ``sample(incident_energies)``: (B,) MeV tensor → (B, V) MeV tensor of showers, every voxel
      ≥ 0, V = ``geometry.n_voxels``; randomness comes from torch's global RNG, so callers seed
      with ``torch.manual_seed`` (or :func:`qcalo.utils.seed_everything`). Must work in float32
      on the model's device.
    * ``parameter_counts()``: ``{"classical": int, "quantum": int, "total": int}``, where quantum
      counts the circuit weights (rotation / entangler angles) and classical everything else.
    """

    geometry: Geometry

    def sample(self, incident_energies: Tensor) -> Tensor: ...

    def parameter_counts(self) -> dict[str, int]: ...
