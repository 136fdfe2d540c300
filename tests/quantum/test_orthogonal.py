"""OrthogonalCircuit: orthogonality, PennyLane's qml.matrix, exact inverse, gradients."""

from __future__ import annotations

import pennylane as qml
import pytest
import torch

from qcalo.errors import ConfigError, DataError
from qcalo.quantum import OrthogonalCircuit


def pennylane_matrix(circuit: OrthogonalCircuit) -> torch.Tensor:
    gate = qml.CNOT if circuit.entangler_gate == "cnot" else qml.CZ
    weights = circuit.weights.detach().double().numpy()

    def qfunc():
        for layer in range(circuit.n_layers):
            for wire in range(circuit.n_qubits):
                qml.RY(weights[layer, wire], wires=wire)
            for control, target in circuit.pairs:
                gate(wires=[control, target])

    return torch.as_tensor(qml.matrix(qfunc, wire_order=list(range(circuit.n_qubits)))())


@pytest.mark.parametrize(
    ("n_qubits", "n_layers", "entangler", "gate"),
    [
        (1, 2, "linear", "cnot"),
        (3, 1, "ring", "cz"),
        (4, 3, "linear", "cnot"),
        (5, 2, "all_to_all", "cz"),
        (6, 2, "ring", "cnot"),
        (2, 4, "none", "cz"),
        (7, 1, "all_to_all", "cnot"),
    ],
)
def test_matrix_is_orthogonal_and_equals_pennylane(n_qubits, n_layers, entangler, gate):
    circuit = OrthogonalCircuit(
        n_qubits, n_layers, entangler, gate, seed=n_qubits, dtype=torch.float64
    )
    matrix = circuit.matrix()
    assert matrix.shape == (2**n_qubits, 2**n_qubits) and matrix.dtype == torch.float64
    torch.testing.assert_close(
        matrix.T @ matrix, torch.eye(2**n_qubits, dtype=torch.float64), atol=1e-12, rtol=0
    )
    reference = pennylane_matrix(circuit)
    assert reference.imag.abs().max() < 1e-12
    torch.testing.assert_close(matrix, reference.real, atol=1e-12, rtol=0)


def test_forward_inverse_and_float32_default():
    circuit = OrthogonalCircuit(5, 3, seed=0)
    assert circuit.weights.dtype == torch.float32 and circuit.matrix().dtype == torch.float32
    x = torch.randn(10, 32)
    y = circuit(x)
    matrix = circuit.matrix()
    torch.testing.assert_close(y, x @ matrix.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(circuit.inverse(y), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(circuit.inverse(x), x @ matrix, atol=1e-5, rtol=0)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), atol=1e-4, rtol=0)
    assert circuit.log_abs_det(x).shape == (10,)


def test_initialisation_mixes_and_is_seeded():
    circuit = OrthogonalCircuit(4, 2, seed=3)
    matrix = circuit.matrix().detach()
    # Dense: most entries far from 0, unlike an identity or a permutation.
    assert (matrix.abs() > 1e-3).float().mean() > 0.5
    torch.testing.assert_close(matrix, OrthogonalCircuit(4, 2, seed=3).matrix().detach())
    assert not torch.allclose(matrix, OrthogonalCircuit(4, 2, seed=4).matrix().detach())


def test_gradients_match_finite_differences():
    circuit = OrthogonalCircuit(3, 2, "ring", "cnot", seed=1, dtype=torch.float64)
    x = torch.randn(4, 8, dtype=torch.float64)
    c = torch.randn(4, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda w: _forward_with(circuit, w, x, c),
        (circuit.weights.detach().clone().requires_grad_(),),
    )
    assert torch.autograd.gradcheck(
        lambda inp: (circuit.inverse(inp) * c).sum(), (x.clone().requires_grad_(),)
    )


def _forward_with(circuit, weights, x, c):
    # A functional call so gradcheck sees `weights` as the differentiated input.
    out = torch.func.functional_call(circuit, {"weights": weights}, (x,))
    return (out * c).sum()


def test_errors():
    with pytest.raises(ConfigError, match="entangler_gate"):
        OrthogonalCircuit(3, 1, entangler_gate="crz")
    with pytest.raises(ConfigError, match="entangler"):
        OrthogonalCircuit(3, 1, entangler="star")
    with pytest.raises(DataError, match=r"\(batch, 8\)"):
        OrthogonalCircuit(3, 1)(torch.zeros(2, 7))
