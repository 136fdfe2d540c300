"""PennyLane backend: finite shots, other devices, and the README example."""

from __future__ import annotations

import torch

from qcalo.quantum import CircuitSpec, QuantumLayer


def test_finite_shots_within_five_sigma():
    spec = CircuitSpec(
        n_qubits=3, n_layers=2, embedding="X", entangler="ring", measurements=("z", "zz", "probs")
    )
    inputs = torch.tensor([[0.4, -0.9, 1.7], [2.1, 0.2, -0.3]], dtype=torch.float64)
    exact = QuantumLayer(spec, dtype=torch.complex128, seed=4)(inputs).detach()
    shots = 4000
    sampled = QuantumLayer(
        spec,
        backend="pennylane",
        dtype=torch.complex128,
        seed=4,
        shots=shots,
        device_options={"seed": 123},
    )(inputs).detach()
    n_pauli = 3 + 3
    # ±1 observables: Var = 1 - ⟨O⟩²; probabilities: Var = p(1 - p).
    variance = torch.cat(
        [1 - exact[:, :n_pauli].square(), exact[:, n_pauli:] * (1 - exact[:, n_pauli:])], dim=1
    )
    sigma = (variance.clamp_min(0) / shots).sqrt()
    assert ((sampled - exact).abs() <= 5 * sigma + 1e-9).all()
    assert (sampled != exact).any()  # genuinely sampled


def test_lightning_adjoint_matches_torch():
    spec = CircuitSpec(
        n_qubits=4, n_layers=2, reupload=True, entangler_gate="isingzz", measurements=("z", "zz")
    )
    inputs = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch_layer = QuantumLayer(spec, dtype=torch.complex128, seed=2)
    lightning = QuantumLayer(
        spec,
        backend="pennylane",
        device_name="lightning.qubit",
        diff_method="adjoint",
        dtype=torch.complex128,
        seed=2,
    )
    out_t, out_l = torch_layer(inputs), lightning(inputs)
    torch.testing.assert_close(out_l.double(), out_t, atol=1e-6, rtol=0)
    out_l.sum().backward()
    out_t.sum().backward()
    torch.testing.assert_close(
        lightning.rotation_weights.grad, torch_layer.rotation_weights.grad, atol=1e-6, rtol=0
    )


def test_readme_example():
    # Keep in sync with the README's "Quantum circuits" example.
    import torch

    from qcalo.quantum import CircuitSpec, QuantumLayer

    spec = CircuitSpec(
        n_qubits=4, n_layers=2, embedding="Y", entangler="ring", measurements=("z", "zz")
    )
    fast = QuantumLayer(spec, seed=0, dtype=torch.complex128)  # batched torch statevector
    reference = QuantumLayer(
        spec, backend="pennylane", device_name="default.qubit", seed=0, dtype=torch.complex128
    )
    x = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64).reshape(2, 4)  # (batch, n_qubits) angles
    a, b = fast(x), reference(x)
    print(fast.n_outputs, a.shape)  # 10 torch.Size([2, 10])
    print((a - b).abs().max().item() < 1e-12)  # True
    assert fast.n_outputs == 10 and a.shape == (2, 10)
    assert (a - b).abs().max().item() < 1e-12
