"""The interface every shower model implements, whatever its kind.

Generation (:mod:`qcalo.generation`), timing (:mod:`qcalo.generation.timing`) and evaluation use
only these members of the model ``qcalo.training.load_run`` returns; every registered model
kind (:mod:`qcalo.models.registry`: coupling flows, the Born machine with a flow stage 2, and
later WGAN-GP and QINN) builds models that implement them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from qcalo.data.geometry import Geometry

__all__ = ["ShowerGenerator"]


@runtime_checkable
class ShowerGenerator(Protocol):
    """A trained model that turns incident energies into showers.

    Implemented by every registered model kind (:mod:`qcalo.models.registry`):
    :class:`qcalo.models.ShowerFlow` (two-stage coupling flow),
    :class:`qcalo.models.BornShowerModel` (Born-machine stage 1),
    :class:`qcalo.models.wgan.model.WGANShowerModel` (FastCaloQ's WGAN-GP) and
    :class:`qcalo.models.qinn.QINNShowerModel` (quantum invertible network stage 1).
    Generation, timing and evaluation code use only these members.

    * ``geometry``: the :class:`qcalo.data.geometry.Geometry` whose voxels the showers fill.
    * ``sample(incident_energies)``: (B,) MeV tensor → (B, V) MeV tensor of showers, every voxel
      ≥ 0, V = ``geometry.n_voxels``; randomness comes from torch's global RNG, so callers seed
      with ``torch.manual_seed`` (or :func:`qcalo.utils.seed_everything`). Must work in float32
      on the model's device.
    * ``parameter_counts()``: ``{"classical": int, "quantum": int, "total": int}``, where quantum
      counts the circuit weights (rotation / entangler angles) and classical everything else.
    * ``incident_energy_range()``: ``(lowest, highest)`` incident energy in MeV of the events
      the model was fitted on, so callers can warn when asked to extrapolate.
    """

    geometry: Geometry

    def sample(self, incident_energies: Tensor) -> Tensor: ...

    def parameter_counts(self) -> dict[str, int]: ...

    def incident_energy_range(self) -> tuple[float, float]: ...
