"""Product circuits in closed form: each wire's Bloch vector, rotated gate by gate, no state vector.

A circuit without entanglers keeps every wire in a product state, so wire i's expectation
⟨Z_i⟩ depends on wire i's input angle and weights alone: it is the z component of the Bloch
vector (0, 0, 1) after wire i's single-qubit rotations, each a 3×3 rotation of that vector
(RX, RY, RZ by angle θ rotate it about x, y, z by θ). Without re-uploading this is a single
sinusoid of the input, ⟨Z_i⟩ = A_i sin x_i + B_i cos x_i with A_i² + B_i² ≤ 1 set by the weights;
with re-uploading a trigonometric polynomial of degree n_layers. ⟨Z_iZ_j⟩ = ⟨Z_i⟩⟨Z_j⟩.

:class:`ProductCircuit` computes exactly what :class:`qcalo.quantum.QuantumLayer` computes for
a ``CircuitSpec`` with ``entangler="none"`` and ``"z"`` / ``"zz"`` measurements (the tests
hold them equal to 1e-6 in value and gradient, on qcalo's engine and on PennyLane), with the
same weights (``rotation_weights`` of shape ``spec.rotation_weight_shape``, drawn the same way)
at O(n_qubits) cost per sample. It is the classical conditioner that study 2's product-circuit
control turned out to be (``conditioner: trig``).

Example::

    >>> import torch
    >>> from qcalo.quantum import CircuitSpec
    >>> spec = CircuitSpec(n_qubits=2, n_layers=1, entangler="none")
    >>> circuit = ProductCircuit(spec)
    >>> with torch.no_grad():
    ...     _ = circuit.rotation_weights.zero_()
    >>> circuit(torch.tensor([[0.0, 3.14159265]])).round(decimals=4)   # ⟨Z⟩ = cos(x)
    tensor([[ 1., -1.]])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qcalo.errors import ConfigError
from qcalo.quantum.spec import CircuitSpec

__all__ = ["ProductCircuit", "check_product_spec"]


def check_product_spec(spec: CircuitSpec) -> None:
    """:class:`ConfigError` unless ``spec`` is a product circuit with Z-type measurements."""
    problems = []
    if spec.entangler != "none":
        problems.append(f"entangler {spec.entangler!r} (needs 'none')")
    if spec.final_qft:
        problems.append("final_qft (entangles the wires)")
    other = [m for m in spec.measurements if m not in ("z", "zz")]
    if other:
        problems.append(f"measurements {other} (only 'z' and 'zz')")
    if problems:
        raise ConfigError(
            "a closed-form (trig) circuit must be a product circuit: "
            + "; ".join(problems)
            + "; set circuit.entangler: none or use a quantum / hybrid conditioner"
        )


def _rotate(a: Tensor, b: Tensor, angle: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) rotated by ``angle``: (a cos θ - b sin θ, a sin θ + b cos θ)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return a * c - b * s, a * s + b * c


def bloch_z(spec: CircuitSpec, inputs: Tensor, rotation_weights: Tensor) -> Tensor:
    """⟨Z_i⟩ (B, n) of the product circuit ``spec`` on ``inputs`` (B, n) radians."""
    batch = inputs.shape[0]
    shape = (batch, spec.n_qubits)
    x = inputs.new_zeros(shape)
    y = inputs.new_zeros(shape)
    z = inputs.new_ones(shape)

    def rx(theta: Tensor) -> None:
        nonlocal y, z
        y, z = _rotate(y, z, theta)

    def ry(theta: Tensor) -> None:
        nonlocal x, z
        z, x = _rotate(z, x, theta)

    def rz(theta: Tensor) -> None:
        nonlocal x, y
        x, y = _rotate(x, y, theta)

    embed = {"X": rx, "Y": ry, "Z": rz}[spec.embedding]
    for layer in range(spec.n_layers):
        if layer == 0 or spec.reupload:
            embed(inputs)
        w = rotation_weights[layer]
        if spec.rotations == "ryrz":
            ry(w[:, 0])
            rz(w[:, 1])
        else:  # Rot(φ, θ, ω) = RZ(ω) RY(θ) RZ(φ)
            rz(w[:, 0])
            ry(w[:, 1])
            rz(w[:, 2])
    return z


class ProductCircuit(nn.Module):
    """A product circuit's measurements (B, spec.n_outputs) from inputs (B, n_qubits), radians.

    ``rotation_weights`` (n_layers, n_qubits, 2 | 3) are drawn uniformly in [0, 2π) from the
    ``generator`` (or torch's global RNG), as :class:`qcalo.quantum.QuantumLayer` draws them,
    so the two built after the same seed hold the same weights.
    """

    _pair_index: Tensor

    def __init__(self, spec: CircuitSpec, generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_product_spec(spec)
        self.spec = spec
        angles = torch.rand(spec.rotation_weight_shape, generator=generator, dtype=torch.float64)
        self.rotation_weights = nn.Parameter((angles * (2 * math.pi)).float())
        pairs = spec.zz_pairs if "zz" in spec.measurements else []
        self.register_buffer(
            "_pair_index", torch.tensor(pairs, dtype=torch.long).reshape(-1, 2), persistent=False
        )

    @property
    def n_outputs(self) -> int:
        return self.spec.n_outputs

    def forward(self, inputs: Tensor) -> Tensor:
        weights = self.rotation_weights.to(inputs.dtype)
        z = bloch_z(self.spec, inputs, weights)
        parts = []
        for measurement in self.spec.measurements:
            if measurement == "z":
                parts.append(z)
            else:
                index = self._pair_index
                parts.append(z[:, index[:, 0]] * z[:, index[:, 1]])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
