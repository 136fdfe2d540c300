"""Conditioners: networks mapping [x_a, context] (B, in) to coupling parameters (B, out).

Kinds, swappable per flow block (docs/design/models.md#conditioners):

* :class:`MLPConditioner` (``"mlp"``): Linear → SiLU → … → Linear;
* :class:`QuantumConditioner` (``"quantum"``): Linear(in → n_qubits) → angles π·tanh(·) →
  :class:`qcalo.quantum.QuantumLayer` (torch statevector backend) → measured features
  (⟨Z_i⟩, and ⟨Z_iZ_j⟩ if the circuit measures ``"zz"``) → Linear(→ out); the circuit may
  also be the user's own PennyLane function (:mod:`qcalo.quantum.pennylane_import`), with
  Linear(in → its n_inputs);
* :class:`HybridConditioner` (``"hybrid"``): the MLP's last hidden features and the circuit's
  measured features, concatenated → Linear(→ out);
* :class:`FullyQuantumConditioner` (``"full_quantum"``): s and t straight from one circuit's
  measurements, with only elementwise input and output scaling (affine couplings);
* :class:`TrigConditioner` (``"trig"``): the hybrid conditioner with its product circuit
  (``entangler: none``) computed in closed form (:class:`qcalo.quantum.bloch.ProductCircuit`:
  per wire a sinusoid of the input angle), a classical network with the same parameters and
  the same function as the product-circuit hybrid, no state vector.

The final Linear of every kind is zero-initialised, so each coupling block starts as the
identity; every weight (the circuit's included) trains end to end by backpropagation. The
circuit weights are the "quantum" parameters (:func:`quantum_parameters`); the Linear maps
around the circuit count as classical.

Example::

    >>> import torch
    >>> net = MLPConditioner(3, 4, hidden=[8])
    >>> net(torch.randn(5, 3)).abs().max().item()     # zero-initialised output layer
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from qcalo.quantum.bloch import ProductCircuit
from qcalo.quantum.layer import as_spec
from qcalo.quantum.pennylane_import import circuit_inputs, circuit_layer
from qcalo.quantum.registry import circuit_parameters

__all__ = [
    "MLPConditioner",
    "QuantumConditioner",
    "HybridConditioner",
    "FullyQuantumConditioner",
    "TrigConditioner",
    "build_conditioner",
    "quantum_parameters",
]


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp_body(in_features: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.SiLU()]
        width = h
    return nn.Sequential(*layers)


class MLPConditioner(nn.Module):
    """A classical MLP with SiLU activations; ``hidden`` lists the hidden widths (may be empty)."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.body = _mlp_body(in_features, hidden)
        self.head = _zero_linear(hidden[-1] if hidden else in_features, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.head(self.body(inputs))


class _CircuitFeatures(nn.Module):
    """Linear(in → n_qubits) → π·tanh → circuit → measured features (B, spec.n_outputs)."""

    def __init__(self, in_features: int, spec: object) -> None:
        super().__init__()

        # spec: a CircuitSpec, or a UserCircuit (the user's own PennyLane function).
        self.encode = nn.Linear(in_features, circuit_inputs(spec))
        self.circuit = circuit_layer(spec)
        self.n_outputs = int(self.circuit.n_outputs)

    def forward(self, inputs: Tensor) -> Tensor:
        angles = math.pi * torch.tanh(self.encode(inputs))
        return self.circuit(angles).to(inputs.dtype)


class QuantumConditioner(nn.Module):
    """Classical in/out maps around a parametrised circuit (``spec``: a ``qcalo.quantum.CircuitSpec``)."""

    def __init__(self, in_features: int, out_features: int, spec: object) -> None:
        super().__init__()
        self.features = _CircuitFeatures(in_features, spec)
        self.head = _zero_linear(self.features.n_outputs, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.head(self.features(inputs))


class HybridConditioner(nn.Module):
    """MLP features (last hidden width) and circuit features concatenated, then a zero-init Linear."""

    def __init__(
        self, in_features: int, out_features: int, hidden: Sequence[int], spec: object
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError(
                "a hybrid conditioner needs at least one hidden layer for its MLP half"
            )
        self.body = _mlp_body(in_features, hidden)
        self.features = _CircuitFeatures(in_features, spec)
        self.head = _zero_linear(hidden[-1] + self.features.n_outputs, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.head(torch.cat([self.body(inputs), self.features(inputs)], dim=1))


class _TrigFeatures(nn.Module):
    """Linear(in → n_qubits) → π·tanh → the product circuit in closed form → (B, n_outputs)."""

    def __init__(self, in_features: int, spec: object) -> None:
        super().__init__()

        circuit_spec = as_spec(spec)  # type: ignore[arg-type]
        self.encode = nn.Linear(in_features, circuit_spec.n_qubits)
        self.circuit = ProductCircuit(circuit_spec)
        self.n_outputs = int(self.circuit.n_outputs)

    def forward(self, inputs: Tensor) -> Tensor:
        angles = math.pi * torch.tanh(self.encode(inputs))
        return self.circuit(angles)


class TrigConditioner(nn.Module):
    """A circuit conditioner with the product circuit in closed form (``"trig"``): with
    ``hidden`` widths, :class:`HybridConditioner`'s; with ``hidden = []``,
    :class:`QuantumConditioner`'s (no MLP half).

    Built after the same seed as that conditioner with ``entangler: none``, it holds the same
    weights (same shapes, names and order of draws) and computes the same function to float
    rounding; it is classical, so none of its weights count as circuit angles.
    """

    def __init__(
        self, in_features: int, out_features: int, hidden: Sequence[int], spec: object
    ) -> None:
        super().__init__()
        self.body = _mlp_body(in_features, hidden) if hidden else None
        self.features = _TrigFeatures(in_features, spec)
        width = hidden[-1] if hidden else 0
        self.head = _zero_linear(width + self.features.n_outputs, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        if self.body is None:
            return self.head(self.features(inputs))
        return self.head(torch.cat([self.body(inputs), self.features(inputs)], dim=1))


class FullyQuantumConditioner(nn.Module):
    """Both s(·) and t(·) of a coupling from one circuit's measurements (docs/design/origin.md, the
    seed's "quantum networks for both s and t"), with only elementwise scaling around it.

    Wire w receives the angle π·tanh(a_w·u_{w mod in} + b_w) of input u (B, in) (inputs are
    re-used cyclically when the circuit has more wires than inputs); the output is
    ``scale ⊙ m[:out] + shift`` of the measured features m (⟨Z_i⟩, then ⟨Z_iZ_j⟩ if measured),
    so no dense layer mixes anything classically. ``scale`` and ``shift`` start at zero, so the
    coupling block starts as the identity, as every other conditioner's. The circuit must
    measure at least ``out_features`` features: with affine couplings that is 2 per transformed
    dimension (e.g. 6 qubits measuring "z" and "zz" give 21 ≥ 2·3); spline couplings need far
    more and are refused with a message.
    """

    wire_input: Tensor

    def __init__(self, in_features: int, out_features: int, spec: object) -> None:
        super().__init__()

        self.circuit = circuit_layer(spec)
        n_qubits = circuit_inputs(spec)  # the circuit's angle inputs (its wires for a CircuitSpec)
        n_measured = int(self.circuit.n_outputs)
        if n_measured < out_features:
            raise ValueError(
                f"a fully quantum conditioner's circuit measures {n_measured} features but the "
                f"coupling needs {out_features}; measure 'zz' too, add qubits, or use an affine "
                "coupling"
            )
        self.register_buffer(
            "wire_input", torch.arange(n_qubits) % max(in_features, 1), persistent=False
        )
        self.input_scale = nn.Parameter(torch.ones(n_qubits))
        self.input_shift = nn.Parameter(torch.zeros(n_qubits))
        self.output_scale = nn.Parameter(torch.zeros(out_features))
        self.output_shift = nn.Parameter(torch.zeros(out_features))
        self.out_features = out_features

    def forward(self, inputs: Tensor) -> Tensor:
        wired = inputs[:, self.wire_input]
        angles = math.pi * torch.tanh(self.input_scale * wired + self.input_shift)
        measured = self.circuit(angles).to(inputs.dtype)[:, : self.out_features]
        return self.output_scale * measured + self.output_shift


def build_conditioner(
    kind: str, in_features: int, out_features: int, hidden: Sequence[int], spec: object | None
) -> nn.Module:
    """A conditioner of ``kind`` ('mlp' | 'quantum' | 'hybrid' | 'full_quantum' | 'trig')."""
    if kind == "mlp":
        return MLPConditioner(in_features, out_features, hidden)
    if spec is None:
        raise ValueError(f"a {kind!r} conditioner needs a circuit spec")
    if kind == "quantum":
        return QuantumConditioner(in_features, out_features, spec)
    if kind == "hybrid":
        return HybridConditioner(in_features, out_features, hidden, spec)
    if kind == "full_quantum":
        return FullyQuantumConditioner(in_features, out_features, spec)
    if kind == "trig":
        return TrigConditioner(in_features, out_features, hidden, spec)
    raise ValueError(
        f"unknown conditioner {kind!r}; expected 'mlp', 'quantum', 'hybrid', 'full_quantum' or 'trig'"
    )


def quantum_parameters(module: nn.Module) -> Iterable[nn.Parameter]:
    """The circuit weights (rotation / entangler angles) inside ``module``, each once.

    The answer to "which modules are circuits" is :mod:`qcalo.quantum.registry`'s.
    """

    return circuit_parameters(module)
