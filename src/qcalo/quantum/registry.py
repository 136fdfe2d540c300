"""The one answer to "which modules are circuits?", for counting, capturing and plotting.

These torch modules hold circuit weights in qcalo:

* :class:`qcalo.quantum.QuantumLayer`: inputs are rotation angles, outputs measured features
  (or basis-state probabilities); its final state can be captured (:class:`StateCapture`);
* :class:`qcalo.quantum.OrthogonalCircuit`: a real-gate circuit used as an orthogonal matrix
  on amplitudes (the quantum mixer); it has no angle inputs, so state capture does not apply;
* :class:`qcalo.quantum.real_circuit.RealLayeredCircuit`: the QINN's real-gate circuit with an
  exact adjoint (not capturable either: it acts on states the caller prepares);
* :class:`qcalo.quantum.pennylane_import.PennyLaneFunctionLayer`: the user's own PennyLane
  circuit function (not capturable: its state is not exposed).

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

import torch
from torch import nn

from qcalo.errors import ConfigError
from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.orthogonal import OrthogonalCircuit
from qcalo.quantum.pennylane_import import PennyLaneFunctionLayer
from qcalo.quantum.real_circuit import RealLayeredCircuit

__all__ = [
    "circuit_types",
    "is_circuit",
    "named_circuits",
    "circuit_parameters",
    "capturable_circuits",
    "on_pennylane",
]


def circuit_types() -> tuple[type[nn.Module], ...]:
    """The module classes whose parameters are circuit weights."""
    return (QuantumLayer, OrthogonalCircuit, RealLayeredCircuit, PennyLaneFunctionLayer)


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

    return [(name, sub) for name, sub in named_circuits(module) if isinstance(sub, QuantumLayer)]


def on_pennylane(
    module: nn.Module,
    device_name: str = "default.qubit",
    *,
    shots: int | None = None,
    depolarizing: float = 0.0,
    seed: int | None = None,
    diff_method: str = "best",
) -> nn.Module:
    """A deep copy of ``module`` whose every :class:`QuantumLayer` runs on a PennyLane device.

    The copies keep the trained weights; ``shots`` (None = exact expectation values),
    ``depolarizing`` (see :func:`qcalo.quantum.pennylane_backend.circuit_function`; use
    ``device_name="default.mixed"``) and ``seed`` (the device's shot RNG; circuit ``i`` gets
    ``seed + i``) apply to all of them. This is how a model trained on the fast torch simulator
    is evaluated with finite shots or noise, or on hardware. The circuits then run in float64
    (the PennyLane devices' precision). Other circuit modules (the quantum mixer's orthogonal
    circuit, the QINN's real circuit) have no PennyLane form here: ``ConfigError``.

    Example::

        >>> noisy = on_pennylane(model, "default.mixed", depolarizing=0.001)  # doctest: +SKIP
    """
    import copy

    clone = copy.deepcopy(module)
    circuits = named_circuits(clone)
    others = [
        name or "(the module itself)" for name, sub in circuits if not isinstance(sub, QuantumLayer)
    ]
    if others:
        raise ConfigError(
            f"on_pennylane: {', '.join(others)} are not QuantumLayers (no PennyLane form); "
            "only angle-input circuits (quantum/hybrid conditioners, Born machines) can be moved"
        )
    for index, (name, layer) in enumerate(circuits):
        assert isinstance(layer, QuantumLayer)
        replacement = QuantumLayer(
            layer.spec,
            backend="pennylane",
            dtype=torch.complex128,
            device_name=device_name,
            shots=shots,
            diff_method=diff_method,
            device_options={} if seed is None else {"seed": seed + index},
            depolarizing=depolarizing,
        )
        replacement.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
        if not name:
            return replacement
        parent_name, _, child = name.rpartition(".")
        setattr(clone.get_submodule(parent_name) if parent_name else clone, child, replacement)
    return clone
