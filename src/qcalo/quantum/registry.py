"""The one answer to "which modules are circuits?", for counting, capturing and plotting.

Two kinds of torch modules hold circuit weights in qcalo:

* :class:`qcalo.quantum.QuantumLayer`: inputs are rotation angles, outputs measured features
  (or basis-state probabilities); its final state can be captured (:class:`StateCapture`);
* :class:`qcalo.quantum.OrthogonalCircuit`: a real-gate circuit used as an orthogonal matrix
  on amplitudes (the quantum mixer); it has no angle inputs, so state capture does not apply;
* :class:`qcalo.quantum.real_circuit.RealLayeredCircuit`: the QINN's real-gate circuit with an
  exact adjoint (not capturable either: it acts on states the caller prepares).

Every caller (parameter counts, state capture, ``named_circuits`` of a model) asks here instead
of listing the classes itself, so a new circuit module is added in one place.

Example::

    >>> from torch import nn
    >>> from qcalo.quantum import CircuitSpec, QuantumLayer
    >>> net = nn.Sequential(nn.Linear(2, 3), QuantumLayer(CircuitSpec(n_qubits=3), seed=0))
    >>> [name for name, _ in named_circuits(net)], sum(p.numel() for p in circuit_parameters(net))
    (['1'], 6)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from qcalo.quantum.layer import QuantumLayer

__all__ = [
    "circuit_types",
    "is_circuit",
    "named_circuits",
    "circuit_parameters",
    "capturable_circuits",
]


def circuit_types() -> tuple[type[nn.Module], ...]:
    """The module classes whose parameters are circuit weights."""
    # Imported here: this module is imported by models that the circuit modules do not know.
    from qcalo.quantum.layer import QuantumLayer
    from qcalo.quantum.orthogonal import OrthogonalCircuit
    from qcalo.quantum.real_circuit import RealLayeredCircuit

    return (QuantumLayer, OrthogonalCircuit, RealLayeredCircuit)


def is_circuit(module: nn.Module) -> bool:
    """Whether ``module`` itself is a circuit (its parameters are rotation / entangler angles)."""
    return isinstance(module, circuit_types())


def named_circuits(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every circuit inside ``module`` (itself included) as (dotted name, module), in module order."""
    kinds = circuit_types()
    return [(name, sub) for name, sub in module.named_modules() if isinstance(sub, kinds)]


def circuit_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The circuit weights inside ``module``, each once (shared parameters are not repeated)."""
    seen: set[int] = set()
    for _, circuit in named_circuits(module):
        for p in circuit.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                yield p


def capturable_circuits(module: nn.Module) -> list[tuple[str, QuantumLayer]]:
    """The circuits whose final state :class:`qcalo.quantum.StateCapture` can record (angle inputs)."""
    from qcalo.quantum.layer import QuantumLayer

    return [(name, sub) for name, sub in named_circuits(module) if isinstance(sub, QuantumLayer)]
