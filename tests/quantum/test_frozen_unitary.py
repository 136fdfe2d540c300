"""Inference circuits (no graph recorded): the unitary strategy's matrix is cached while the
weights stay equal, rebuilt whenever they change, and "auto" takes it where it is fastest."""

from __future__ import annotations

import pytest
import torch

from qcalo.quantum import CircuitSpec, QuantumLayer
from qcalo.quantum.torch_backend import FROZEN_UNITARY_MAX_QUBITS, choose_strategy


def _spec(n: int = 5, **kw) -> CircuitSpec:
    return CircuitSpec(n_qubits=n, n_layers=2, entangler="linear", **kw)


def _gates(layer: QuantumLayer, x: torch.Tensor) -> torch.Tensor:
    circuit = layer._torch_circuit
    return circuit.features(
        x, layer.rotation_weights, layer.entangler_weights, strategy="gates"
    ).detach()


@pytest.mark.parametrize(
    "spec",
    [
        _spec(),
        _spec(embedding="X", rotations="rot", measurements=("z", "zz")),
        _spec(4, entangler_gate="crz", measurements=("probs", "z")),
        _spec(3, entangler_gate="isingzz", measurements=("state",)),
    ],
)
@pytest.mark.parametrize("batch", [1, 6])  # NumPy route at batch 1, torch at 6
def test_cached_matrix_follows_every_change_of_the_weights(spec: CircuitSpec, batch: int) -> None:
    layer = QuantumLayer(spec, seed=3, dtype=torch.complex128)
    x = torch.rand(batch, spec.n_qubits, dtype=torch.float64) * 3
    with torch.no_grad():
        first = layer(x)
        assert layer(x).equal(first)  # reused
    torch.testing.assert_close(first, _gates(layer, x), rtol=0, atol=1e-12)
    changes = [
        lambda: layer.rotation_weights.data.add_(0.3),  # through .data: no version bump
        lambda: setattr(layer.rotation_weights, "data", layer.rotation_weights.data * 0.5),
    ]
    if layer.entangler_weights is not None:
        changes.append(lambda: layer.entangler_weights.data.mul_(-1.0))  # type: ignore[union-attr]
    previous = first
    for change in changes:
        change()
        with torch.no_grad():
            now = layer(x)
        assert not torch.allclose(now, previous)
        torch.testing.assert_close(now, _gates(layer, x), rtol=0, atol=1e-12)
        previous = now


def test_training_steps_then_inference_see_the_new_weights() -> None:
    layer = QuantumLayer(_spec(6), seed=1)
    x = torch.rand(16, 6) * 3
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(3):
        with torch.no_grad():
            inferred = layer(x)
        torch.testing.assert_close(inferred, _gates(layer, x), rtol=1e-5, atol=1e-6)
        loss = layer(x).square().sum()  # records a graph: not the cached path
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _gates(layer, x), rtol=1e-5, atol=1e-6)


def test_load_state_dict_rebuilds_the_matrix() -> None:
    a, b = QuantumLayer(_spec(), seed=1), QuantumLayer(_spec(), seed=2)
    x = torch.rand(4, 5) * 3
    with torch.no_grad():
        before = a(x)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.allclose(before, b(x).detach())


def test_auto_takes_the_cached_unitary_for_inference_only() -> None:
    small = _spec(FROZEN_UNITARY_MAX_QUBITS)
    for batch in (1, 64, 1024):
        assert choose_strategy(small, batch, grad=False) == "unitary"
        assert choose_strategy(small, batch) == "gates"  # training: the cost model as before
    assert choose_strategy(_spec(FROZEN_UNITARY_MAX_QUBITS + 2), 64, grad=False) != "unitary"
    assert choose_strategy(_spec(4, reupload=True), 8, grad=False) == "gates"
    assert choose_strategy(_spec(4, embedding="Z"), 8, grad=False) == choose_strategy(
        _spec(4, embedding="Z"), 8
    )


def test_auto_takes_small_for_small_training_batches_on_the_cpu() -> None:
    spec = _spec(6)
    assert [choose_strategy(spec, b, cpu=True) for b in (1, 64, 128)] == [
        "small",
        "small",
        "unitary",
    ]
    assert choose_strategy(spec, 1) == "unitary"  # device unknown (or not a CPU): no NumPy path
    assert choose_strategy(_spec(4, reupload=True), 8, cpu=True) == "gates"
    assert choose_strategy(_spec(10), 8, cpu=True) == "gates"
    assert choose_strategy(spec, 1, grad=False, cpu=True) == "unitary"  # inference: cached matrix
    circuit = QuantumLayer(spec, seed=0)._torch_circuit
    chosen = circuit.resolve_strategy("auto", 32, 8, torch.device("cpu"), torch.float32, True)
    assert chosen == "small"


def test_big_registers_are_not_kept() -> None:
    layer = QuantumLayer(_spec(FROZEN_UNITARY_MAX_QUBITS + 1), seed=0, strategy="unitary")
    x = torch.rand(2, FROZEN_UNITARY_MAX_QUBITS + 1) * 3
    with torch.no_grad():
        out = layer(x)
    assert not layer._torch_circuit._frozen
    torch.testing.assert_close(out, _gates(layer, x), rtol=1e-5, atol=1e-6)
