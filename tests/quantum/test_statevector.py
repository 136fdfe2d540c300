"""Building blocks of the torch backend against closed forms, finite differences and PennyLane."""

from __future__ import annotations

import math

import pennylane as qml
import pytest
import torch

from qcalo.quantum import statevector as sv


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_angle_product_state_values_and_gradient(n):
    gen = torch.Generator().manual_seed(n)
    x = (torch.rand((3, n), generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    state = sv.angle_product_state(x)
    expected = torch.stack(
        [
            torch.as_tensor(
                qml.matrix(
                    qml.prod(*[qml.RY(float(a), wires=w) for w, a in enumerate(row)]),
                    wire_order=range(n),
                )
            )[:, 0].real
            for row in x
        ]
    )
    torch.testing.assert_close(state, expected)
    # Hand-written backward: finite differences, also where cos or sin of x/2 vanishes.
    assert torch.autograd.gradcheck(sv.angle_product_state, (x.clone().requires_grad_(),))
    edges = torch.tensor(
        [[0.0] * n, [math.pi] * n, [-math.pi] * n], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(sv.angle_product_state, (edges,))


def test_rotation_gates_equal_pennylane():
    w = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for row, gate in zip(w, sv.rotation_gates(w, "rot"), strict=True):
        torch.testing.assert_close(
            gate, torch.as_tensor(qml.matrix(qml.Rot(*row.tolist(), wires=0)))
        )
    for row, gate in zip(w[:, :2], sv.rotation_gates(w[:, :2], "ryrz"), strict=True):
        ref = qml.matrix(qml.RZ(row[1].item(), wires=0)) @ qml.matrix(
            qml.RY(row[0].item(), wires=0)
        )
        torch.testing.assert_close(gate, torch.as_tensor(ref))


def test_product_layer_equals_kron_matrix():
    n = 7
    gen = torch.Generator().manual_seed(1)
    gates = sv.rotation_gates(torch.randn(n, 3, dtype=torch.float64, generator=gen), "rot")
    state = torch.randn(5, 2**n, dtype=torch.complex128, generator=gen)
    full = gates[0]
    for g in gates[1:]:
        full = torch.kron(full, g)
    torch.testing.assert_close(
        sv.apply_product_layer(state, gates, sv.wire_blocks(n)), state @ full.T
    )
    per_sample = sv.rotation_gates(torch.randn(5, n, 3, dtype=torch.float64, generator=gen), "rot")
    out = sv.apply_product_layer(state, per_sample, sv.wire_blocks(n))
    for b in range(5):
        full = per_sample[b, 0]
        for g in per_sample[b, 1:]:
            full = torch.kron(full, g)
        torch.testing.assert_close(out[b], full @ state[b])


def test_cnot_gather_matches_pennylane():
    n, pairs = 4, [(0, 1), (1, 2), (2, 3), (3, 0)]
    index = torch.as_tensor(sv.cnot_gather_index(n, pairs))

    def qfunc():
        for c, t in pairs:
            qml.CNOT(wires=[c, t])

    matrix = torch.as_tensor(qml.matrix(qfunc, wire_order=range(n))()).real.to(torch.float64)
    state = torch.randn(3, 2**n, dtype=torch.float64)
    torch.testing.assert_close(
        sv.permute_amplitudes(state, index, index.argsort()), state @ matrix.T
    )


@pytest.mark.parametrize("n", range(1, 10))
def test_angle_embedding_matches_product_state_and_its_gradient(n):
    gen = torch.Generator().manual_seed(n)
    x = (torch.rand(5, n, generator=gen, dtype=torch.float64) * 2 - 1) * 6
    x[0, 0], x[1, -1] = torch.pi, 0.0  # a vanishing cos and a vanishing sin
    embedding = sv.AngleEmbedding(n, x.device, x.dtype)
    state, saved = embedding.forward(x)
    xr = x.clone().requires_grad_(True)
    reference = sv.product_state(torch.stack([torch.cos(xr / 2), torch.sin(xr / 2)], -1))
    torch.testing.assert_close(state, reference.detach(), atol=1e-14, rtol=0)
    grad = torch.randn(reference.shape, generator=gen, dtype=torch.float64)
    (expected,) = torch.autograd.grad(reference, xr, grad)
    torch.testing.assert_close(embedding.backward(grad, saved), expected, atol=1e-13, rtol=0)


@pytest.mark.parametrize("kind", ["rot", "ryrz"])
@pytest.mark.parametrize("n", range(1, 10))
def test_kron_halves_match_kron_gates_and_weight_gradient(kind, n):
    k = 3 if kind == "rot" else 2
    gen = torch.Generator().manual_seed(10 * n + k)
    weights = torch.rand(3, n, k, generator=gen, dtype=torch.float64) * 6
    weights.requires_grad_(True)
    eye = torch.eye(k, dtype=torch.float64)
    shifts = torch.cat([torch.zeros(1, k, dtype=torch.float64), eye * math.pi])
    sets = sv.rotation_gates(weights.detach()[:, :, None, :] + shifts, kind)
    halves = sv.KronHalves(n, k, weights.device, torch.complex128)
    kron_t, saved = halves.forward(sets[:, :, 0], sets[:, :, 1:])
    reference = sv.kron_gates(sv.rotation_gates(weights, kind)).transpose(1, 2)
    torch.testing.assert_close(kron_t, reference.detach(), atol=1e-13, rtol=0)
    torch.testing.assert_close(halves.forward(sets[:, :, 0])[0], kron_t, atol=0, rtol=0)
    grad = torch.randn(reference.shape, generator=gen, dtype=torch.complex128)
    (expected,) = torch.autograd.grad(reference, weights, grad)
    torch.testing.assert_close(halves.weight_grads(grad, saved), expected, atol=1e-12, rtol=0)
