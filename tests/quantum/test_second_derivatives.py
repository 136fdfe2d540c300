"""The circuit engine must be twice differentiable.

The QINN's likelihood contains log|det ∂f/∂x| of a map through the circuit, so its training
gradient is a second derivative (d/dθ of ∂f/∂x). Every strategy of the torch backend must give
it, checked against a central finite difference of the first derivative (float64).
"""

from __future__ import annotations

import pytest
import torch

from qcalo.quantum import CircuitSpec, QuantumLayer


def _input_gradient_sum(layer: QuantumLayer, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x)[:, 0].sum(), x)
    return grad.sum()


@pytest.mark.parametrize("strategy", ["auto", "gates", "unitary", "small"])
@pytest.mark.parametrize("measurement", ["z", "probs"])
def test_mixed_second_derivative_matches_finite_difference(strategy, measurement):
    spec = CircuitSpec(
        n_qubits=3, n_layers=2, embedding="Y", entangler="ring", measurements=(measurement,)
    )
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=1, strategy=strategy)
    x = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(xr)[:, 0].sum(), xr, create_graph=True)
    (analytic,) = torch.autograd.grad(grad.sum(), layer.rotation_weights)

    eps = 1e-6
    weights = layer.rotation_weights
    for index in [(0, 0, 0), (1, 2, 1), (0, 1, 1)]:
        with torch.no_grad():
            weights[index] += eps
        plus = _input_gradient_sum(layer, x)
        with torch.no_grad():
            weights[index] -= 2 * eps
        minus = _input_gradient_sum(layer, x)
        with torch.no_grad():
            weights[index] += eps
        numeric = (plus - minus) / (2 * eps)
        assert float(analytic[index]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-7)
