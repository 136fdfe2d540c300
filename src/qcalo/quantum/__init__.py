"""Parametrised quantum circuits: one spec, a fast batched torch statevector backend, a PennyLane
backend, real orthogonal circuits for invertible mixing, state capture for interpretability, and
the user's own PennyLane circuit functions (:func:`from_pennylane`)."""

from qcalo.quantum.bench import bench_circuits
from qcalo.quantum.capture import StateCapture, load_captures, plot_entropy_vs_step
from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.orthogonal import OrthogonalCircuit
from qcalo.quantum.pennylane_import import PennyLaneFunctionLayer, from_pennylane
from qcalo.quantum.registry import on_pennylane
from qcalo.quantum.spec import CircuitSpec

__all__ = [
    "CircuitSpec",
    "QuantumLayer",
    "OrthogonalCircuit",
    "StateCapture",
    "load_captures",
    "plot_entropy_vs_step",
    "bench_circuits",
    "on_pennylane",
    "from_pennylane",
    "PennyLaneFunctionLayer",
]
