"""Depolarising noise on the PennyLane backend against a closed form, and `on_pennylane`: a
trained model's circuits moved to a PennyLane device keep its outputs (exact) and gain shot
noise of the expected size (finite shots)."""

from __future__ import annotations

import math

import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.quantum import CircuitSpec, OrthogonalCircuit, QuantumLayer, on_pennylane


@pytest.mark.parametrize("p", [0.0, 0.01, 0.2])
def test_depolarising_noise_shrinks_z_by_the_closed_form(p):
    # One qubit, one layer: RY(x) RY(w0) RZ(w1), each followed by a depolarising channel
    # ρ → (1-p)ρ + p/3 (XρX + YρY + ZρZ), which scales the Bloch vector by 1 - 4p/3.
    # RZ leaves ⟨Z⟩ alone, so ⟨Z⟩ = (1 - 4p/3)^3 cos(x + w0).
    layer = QuantumLayer(
        CircuitSpec(n_qubits=1, n_layers=1),
        backend="pennylane",
        device_name="default.mixed",
        depolarizing=p,
        dtype=torch.complex128,
        seed=3,
    )
    x = torch.tensor([[0.3], [1.9], [-2.5]], dtype=torch.float64)
    w0 = layer.rotation_weights[0, 0, 0].detach()
    expected = (1 - 4 * p / 3) ** 3 * torch.cos(x[:, 0] + w0)
    got = layer(x)[:, 0].detach()
    assert torch.allclose(got, expected, atol=1e-10)


def test_noise_needs_the_pennylane_backend_and_a_mixed_state_device():
    spec = CircuitSpec(n_qubits=2, n_layers=1)
    with pytest.raises(ConfigError, match="default.mixed"):
        QuantumLayer(spec, depolarizing=0.01)
    with pytest.raises(ConfigError, match="probability in"):
        QuantumLayer(spec, backend="pennylane", device_name="default.mixed", depolarizing=1.5)
    pure = QuantumLayer(spec, backend="pennylane", device_name="default.qubit", depolarizing=0.01)
    with pytest.raises(ConfigError, match="needs a mixed-state device such as default.mixed"):
        pure(torch.zeros(2, 2))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        QuantumLayer(CircuitSpec(n_qubits=4, n_layers=2), seed=1),
        torch.nn.Linear(4, 2),
        QuantumLayer(CircuitSpec(n_qubits=2, n_layers=1, entangler_gate="crz"), seed=2),
    )


def test_on_pennylane_keeps_the_weights_and_the_outputs():
    model = _model()
    x = torch.randn(7, 3)
    exact = on_pennylane(model)
    assert model[1].backend == "torch" and exact[1].backend == "pennylane"  # a copy
    assert exact[3].backend == "pennylane"
    assert torch.allclose(exact(x), model(x), atol=1e-5)  # float32 in, float32 out
    mixed = on_pennylane(model, "default.mixed", depolarizing=0.0)
    assert torch.allclose(mixed(x), model(x), atol=1e-5)


def test_on_pennylane_with_shots_is_unbiased_with_the_binomial_spread():
    layer = QuantumLayer(CircuitSpec(n_qubits=2, n_layers=1), seed=4)
    x = torch.full((4000, 2), 0.7)  # one input repeated: 4000 independent shot estimates
    exact = layer(x[:1]).double()[0]
    shots = 100
    estimates = on_pennylane(layer, shots=shots, seed=11)(x.double()).detach()
    # each ⟨Z_i⟩ estimate is the mean of `shots` ±1 outcomes: variance (1 - ⟨Z⟩²) / shots
    std = torch.sqrt((1 - exact**2) / shots)
    assert torch.all((estimates.mean(0) - exact).abs() < 5 * std / math.sqrt(len(x)))
    assert torch.allclose(estimates.std(0), std, rtol=0.1)
    again = on_pennylane(layer, shots=shots, seed=11)(x[:50].double())
    assert torch.equal(again, on_pennylane(layer, shots=shots, seed=11)(x[:50].double()))


def test_on_pennylane_refuses_circuits_without_a_pennylane_form():
    mixer = torch.nn.Sequential(torch.nn.Linear(4, 4), OrthogonalCircuit(2, 1))
    with pytest.raises(ConfigError, match="not QuantumLayers"):
        on_pennylane(mixer)
