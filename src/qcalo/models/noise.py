"""The noise contract of a shower model: which random numbers its sampler consumes.

Every shipped model kind samples a shower as a *fixed* function of the incident energy and a
few named noise tensors. The model says which (``noise_contract()``, a tuple of
:class:`NoiseInput`), draws them (:func:`draw_noise`, in the contract's order, from torch's
global RNG) and turns them into showers (``sample_from_noise(incident_energies, noise)``);
its ``sample`` is exactly ``sample_from_noise(e, draw_noise(contract, B, ...))``. A caller that
supplies the noise itself (an exported ONNX graph inside Geant4, a test) therefore gets the
same showers as ``qcalo generate`` for the same numbers.

Shapes are ``(B, width)`` for a batch of B incident energies; distributions are ``"normal"``
(standard normal, mean 0 and variance 1) or ``"uniform"`` (uniform on [0, 1)).

Example::

    >>> import torch
    >>> contract = (NoiseInput("z_layers", 5, "normal", "stage-1 latent"),)
    >>> noise = draw_noise(contract, 3, dtype=torch.float32, device=torch.device("cpu"))
    >>> noise["z_layers"].shape
    torch.Size([3, 5])
    >>> contract_to_json(contract)[0]["shape"]
    ['N', 5]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from qcalo.errors import DataError, QcaloError

__all__ = [
    "NoiseInput",
    "NotExportableError",
    "check_noise",
    "contract_to_json",
    "draw_noise",
]

Distribution = Literal["normal", "uniform"]


class NotExportableError(QcaloError):
    """A model whose sampler is not a fixed function of named noise (e.g. a Born machine that
    estimates its probabilities from a finite number of shots); the message names the part
    and the fix."""


@dataclass(frozen=True)
class NoiseInput:
    """One named noise tensor of shape (B, ``width``) with the given ``distribution``.

    ``draw_dtype``: the dtype :func:`draw_noise` draws it in (None: the model's float dtype);
    ``draw_on_cpu``: draw on the CPU and move it to the model's device. Both only keep the
    random stream of ``sample`` what it was before the contract existed; a caller supplying its
    own noise may pass any float dtype.
    """

    name: str
    width: int
    distribution: Distribution
    description: str
    draw_dtype: torch.dtype | None = None
    draw_on_cpu: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description: name, shape ``["N", width]``, distribution, description."""
        return {
            "name": self.name,
            "shape": ["N", int(self.width)],
            "distribution": self.distribution,
            "description": self.description,
        }


def contract_to_json(contract: Sequence[NoiseInput]) -> list[dict[str, Any]]:
    """The contract as a list of JSON-ready dicts, in draw order."""
    return [entry.to_json() for entry in contract]


def draw_noise(
    contract: Sequence[NoiseInput], batch: int, *, dtype: torch.dtype, device: torch.device
) -> dict[str, Tensor]:
    """Draw every tensor of ``contract`` for ``batch`` events from torch's global RNG, in order.

    Returns name → (batch, width) tensor on ``device`` (in ``entry.draw_dtype`` or ``dtype``).
    """
    out: dict[str, Tensor] = {}
    for entry in contract:
        entry_dtype = entry.draw_dtype or dtype
        where = torch.device("cpu") if entry.draw_on_cpu else device
        shape = (int(batch), int(entry.width))
        if entry.distribution == "normal":
            value = torch.randn(shape, dtype=entry_dtype, device=where)
        else:
            value = torch.rand(shape, dtype=entry_dtype, device=where)
        out[entry.name] = value.to(device)
    return out


def check_noise(contract: Sequence[NoiseInput], noise: Mapping[str, Tensor], batch: int) -> None:
    """Raise :class:`~qcalo.errors.DataError` unless ``noise`` holds exactly the contract's
    tensors, each (batch, width)."""
    expected = {entry.name for entry in contract}
    if set(noise) != expected:
        raise DataError(
            f"noise tensors {sorted(noise)} do not match the model's contract {sorted(expected)}"
        )
    for entry in contract:
        shape = tuple(noise[entry.name].shape)
        if shape != (batch, entry.width):
            raise DataError(
                f"noise {entry.name!r} has shape {shape}; expected ({batch}, {entry.width})"
            )
