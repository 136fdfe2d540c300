"""Coupling-flow blocks: exact inverses and log-dets for every block type, fitting a known density."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from qcalo.models.blocks.config import FlowConfig
from qcalo.models.blocks.flow import build_flow
from qcalo.models.blocks.transforms import (
    ActNorm,
    ConditionalAffine,
    ConditionalFlow,
    Coupling,
    Permutation,
    QuantumMixer,
)

from .helpers import randomize_heads

F64 = torch.float64
SMALL_CIRCUIT = {"n_qubits": 3, "n_layers": 2}


def _flow(
    coupling: str, conditioner: str, mixer: str, features: int = 5, context: int = 2
) -> ConditionalFlow:
    cfg = FlowConfig(
        n_blocks=2,
        coupling=coupling,
        conditioner=conditioner,
        mixer=mixer,
        hidden=[8],
        circuit=SMALL_CIRCUIT,
        mixer_layers=2,
        spline_bins=6,
        tail_bound=3.0,
    )
    torch.manual_seed(0)
    flow = build_flow(cfg, features, context, seed=3).double()
    randomize_heads(flow)
    return flow


@pytest.mark.parametrize("mixer", ["permutation", "quantum"])
@pytest.mark.parametrize("conditioner", ["mlp", "quantum", "hybrid"])
@pytest.mark.parametrize("coupling", ["affine", "spline"])
def test_block_inverse_and_log_det(coupling, conditioner, mixer):
    flow = _flow(coupling, conditioner, mixer)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=gen, dtype=F64) * 1.5
    c = torch.rand(64, 2, generator=gen, dtype=F64)
    flow.train()
    flow(x, c)  # data-dependent ActNorm initialisation
    flow.eval()
    z, ladj = flow(x, c)
    assert not torch.allclose(
        z, (x - x.mean(0)) / x.std(0, unbiased=False), atol=1e-3
    )  # not a trivial map
    torch.testing.assert_close(flow.inverse(z, c), x, rtol=1e-5, atol=1e-5)
    for i in range(3):
        jac = jacobian(lambda v, i=i: flow(v[None], c[i : i + 1])[0][0], x[i])
        torch.testing.assert_close(
            ladj[i], torch.linalg.slogdet(jac).logabsdet, rtol=1e-7, atol=1e-7
        )


def test_quantum_mixer_chunks_preserve_dimension_and_volume():
    torch.manual_seed(0)
    mixer = QuantumMixer(5, n_layers=2, n_qubits=2, seed=4).double()
    x = torch.randn(7, 5, dtype=F64)
    z, ladj = mixer(x)
    assert z.shape == x.shape and torch.all(ladj == 0)
    torch.testing.assert_close(z.norm(dim=1), x.norm(dim=1))  # orthogonal: lengths kept
    torch.testing.assert_close(mixer.inverse(z), x)
    jac = jacobian(lambda v: mixer(v[None])[0][0], x[0])
    torch.testing.assert_close(
        torch.linalg.slogdet(jac).logabsdet, torch.tensor(0.0, dtype=F64), atol=1e-12, rtol=0
    )
    # 4 of the 5 features are mixed; the permuted vector's last feature passes through untouched
    torch.testing.assert_close(z[:, 4], x[:, mixer.permutation.order[4]], rtol=0, atol=0)
    assert not torch.allclose(z[:, :4], x[:, mixer.permutation.order[:4]])
    big = QuantumMixer(368, n_layers=2, seed=0)
    assert big.chunk == 8 and big.n_mixed == 368


def _cnot_chain_image(basis: int, n_qubits: int, n_layers: int) -> int:
    """Where n_layers of a linear CNOT chain (0→1, 1→2, ...) send basis state ``basis``, worked
    out bit by bit (wire 0 the most significant bit, as in PennyLane)."""
    bits = [(basis >> (n_qubits - 1 - wire)) & 1 for wire in range(n_qubits)]
    for _ in range(n_layers):
        for control in range(n_qubits - 1):
            bits[control + 1] ^= bits[control]
    return sum(bit << (n_qubits - 1 - wire) for wire, bit in enumerate(bits))


def test_quantum_mixer_at_zero_init_range_starts_at_identity_or_cnot_permutation():
    x = torch.randn(6, 9, dtype=F64)
    product = QuantumMixer(9, n_layers=2, n_qubits=3, seed=3, entangler="none", init_range=0.0)
    z, _ = product.double()(x)
    permuted = x[:, product.permutation.order]
    torch.testing.assert_close(z, permuted, rtol=0, atol=0)  # RY(0) = I on every wire
    chain = QuantumMixer(9, n_layers=2, n_qubits=3, seed=3, entangler="linear", init_range=0.0)
    z, _ = chain.double()(x)
    expected = permuted.clone()
    for basis in range(8):
        expected[:, _cnot_chain_image(basis, 3, 2)] = permuted[:, basis]
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
    assert not torch.equal(expected, permuted)  # the chain does move basis states
    # a start, not a fixed point: the loss has a gradient in the angles there
    (z * torch.randn_like(z)).sum().backward()
    assert chain.circuit.weights.grad is not None
    assert chain.circuit.weights.grad.abs().max() > 1e-3


def test_flow_config_passes_the_mixer_init_range_and_keeps_the_dense_default():
    features = 16
    config = FlowConfig(n_blocks=2, hidden=[4], mixer="quantum", mixer_qubits=3)
    assert config.mixer_init_range == math.pi
    dense = [m for m in build_flow(config, features, 1).layers if isinstance(m, QuantumMixer)]
    angles = torch.cat([m.circuit.weights.detach().flatten() for m in dense])
    assert angles.abs().max() <= math.pi and angles.abs().max() > 1.0
    # the default draws what OrthogonalCircuit draws from the block's seed (models unchanged)
    reference = QuantumMixer(features, 2, 3, seed=1, entangler="linear")
    torch.testing.assert_close(dense[1].circuit.weights, reference.circuit.weights)
    zero = config.model_copy(update={"mixer_init_range": 0.0})
    for mixer in (m for m in build_flow(zero, features, 1).layers if isinstance(m, QuantumMixer)):
        assert torch.count_nonzero(mixer.circuit.weights) == 0
    for bad in (-0.1, 3.2):
        with pytest.raises(ValueError, match="mixer_init_range"):
            FlowConfig(mixer="quantum", mixer_init_range=bad)


def test_actnorm_initialises_once_from_data_and_keeps_state_through_state_dict():
    norm = ActNorm(3)
    x = torch.randn(100, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([3.0, -2.0, 7.0])
    z, _ = norm(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    fresh = ActNorm(3)
    fresh.load_state_dict(norm.state_dict())
    z2, _ = fresh(x * 10)  # must not re-initialise on this other batch
    torch.testing.assert_close(z2, norm(x * 10)[0])


def test_fresh_coupling_is_identity_and_permutation_is_exact():
    flow = build_flow(FlowConfig(n_blocks=1, hidden=[4]), 4, 1)
    coupling = [layer for layer in flow.layers if isinstance(layer, Coupling)][0]
    x, c = torch.randn(5, 4), torch.rand(5, 1)
    z, ladj = coupling(x, c)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(ladj, torch.zeros(5), rtol=0, atol=1e-6)
    perm = Permutation.random(6, seed=1)
    y = torch.arange(12.0).reshape(2, 6)
    assert torch.equal(perm.inverse(perm(y)[0]), y)


def test_flow_fits_a_correlated_gaussian_to_its_entropy():
    """An affine coupling flow reaches the true NLL (the entropy, closed form) within 0.05 nats."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]]) * torch.tensor(
        [[2.0, 1.0], [1.0, 0.5]]
    )  # elementwise: var 2 and 0.5
    dist = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0]), covariance_matrix=cov)
    train, test = dist.sample((4000,)), dist.sample((20000,))
    entropy = float(dist.entropy())
    assert entropy == pytest.approx(
        1 + math.log(2 * math.pi) + 0.5 * math.log(float(torch.det(cov)))
    )
    flow = build_flow(FlowConfig(n_blocks=3, coupling="affine", hidden=[16]), 2, 0, seed=0)
    opt = torch.optim.Adam(flow.parameters(), lr=2e-2)
    flow.train()
    for _ in range(150):
        loss = -flow.log_prob(train, None).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    with torch.no_grad():
        nll = -flow.log_prob(test, None).mean().item()
        true_nll = -dist.log_prob(test).mean().item()
    print(f"flow NLL {nll:.4f}, true NLL {true_nll:.4f}, entropy {entropy:.4f}")
    assert nll - true_nll < 0.05
    assert abs(nll - entropy) < 0.05


def test_spline_transform_equals_zukos_rqs():
    from zuko.transforms import MonotonicRQSTransform

    from qcalo.models.blocks.transforms import SplineTransform

    gen = torch.Generator().manual_seed(0)
    k = 8
    params = torch.randn(200, 3, 3 * k - 1, generator=gen, dtype=F64) * 3
    x = torch.randn(200, 3, generator=gen, dtype=F64) * 3  # some outside the tail bound
    ours = SplineTransform(params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], bound=4.0)
    ref = MonotonicRQSTransform(
        params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], bound=4.0
    )
    y, ladj = ours.call_and_ladj(x)
    y_ref, ladj_ref = ref.call_and_ladj(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ladj, ladj_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.inv(y), x, rtol=1e-9, atol=1e-9)


def test_a_mixer_without_entanglers_is_the_kronecker_product_of_its_rotations():
    # O(θ) = Π_l ⊗_i RY(θ[l, i]) with wire 0 the most significant bit (PennyLane's order).
    from qcalo.models.blocks.config import FlowConfig
    from qcalo.models.blocks.flow import build_flow
    from qcalo.models.blocks.transforms import QuantumMixer

    config = FlowConfig(
        n_blocks=1,
        hidden=[4],
        mixer="quantum",
        mixer_qubits=3,
        mixer_layers=2,
        mixer_entangler="none",
    )
    (mixer,) = [m for m in build_flow(config, 9, 1).layers if isinstance(m, QuantumMixer)]
    theta = next(mixer.circuit.parameters()).detach().double().reshape(2, 3)

    def ry(a: torch.Tensor) -> torch.Tensor:
        c, s = torch.cos(a / 2), torch.sin(a / 2)
        return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])

    expected = torch.eye(8, dtype=torch.float64)
    for layer in theta:
        kron = ry(layer[0])
        for angle in layer[1:]:
            kron = torch.kron(kron, ry(angle))
        expected = kron @ expected
    torch.testing.assert_close(mixer.circuit.matrix().double(), expected, rtol=0, atol=1e-6)
    entangled = FlowConfig(n_blocks=1, hidden=[4], mixer="quantum", mixer_qubits=3)
    (other,) = [m for m in build_flow(entangled, 9, 1).layers if isinstance(m, QuantumMixer)]
    assert sum(p.numel() for p in other.parameters()) == sum(p.numel() for p in mixer.parameters())
    assert not torch.allclose(other.circuit.matrix().double(), expected, atol=1e-3)


def test_conditional_norm_is_exact_and_depends_on_the_context():
    cfg = FlowConfig(n_blocks=2, hidden=[8], spline_bins=6, tail_bound=3.0, conditional_norm=[8])
    torch.manual_seed(0)
    flow = build_flow(cfg, 5, 2, seed=3).double()
    assert isinstance(flow.layers[0], ConditionalAffine)
    randomize_heads(flow, scale=0.5)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=gen, dtype=F64)
    c = torch.randn(16, 2, generator=gen, dtype=F64)
    norm = flow.layers[0]
    z, ladj = norm(x, c)
    # the same x under another context maps elsewhere: the shift and scale follow the context
    assert not torch.allclose(norm(x, c.flip(0))[0], z)
    torch.testing.assert_close(norm.inverse(z, c), x, rtol=1e-12, atol=1e-12)
    for i in range(3):  # log|det| of the layer and of the whole flow against autograd's Jacobian
        jac = jacobian(lambda v, i=i: norm(v[None], c[i : i + 1])[0][0], x[i])
        torch.testing.assert_close(ladj[i], torch.linalg.slogdet(jac).logabsdet)
        jac = jacobian(lambda v, i=i: flow(v[None], c[i : i + 1])[0][0], x[i])
        torch.testing.assert_close(flow(x, c)[1][i], torch.linalg.slogdet(jac).logabsdet)
    torch.testing.assert_close(flow.inverse(flow(x, c)[0], c), x, rtol=1e-10, atol=1e-10)
    # |log scale| stays within the bound however large the MLP's output
    with torch.no_grad():
        norm.net.head.bias.fill_(1e4)
    assert norm._shift_log_scale(c)[1].abs().max() <= norm.bound
    assert torch.isfinite(norm.inverse(norm(x, c)[0], c)).all()


def test_conditional_norm_starts_as_the_identity_and_needs_a_context():
    from qcalo.errors import ConfigError

    cfg = FlowConfig(n_blocks=1, hidden=[4], conditional_norm=[])
    flow = build_flow(cfg, 3, 2)
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    z, ladj = flow.layers[0](x, c)
    assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(4))
    with pytest.raises(ConfigError, match="conditional_norm needs a conditional flow"):
        build_flow(cfg, 3, 0)
    with pytest.raises(ValueError, match="conditional_norm width"):
        FlowConfig(conditional_norm=[0])
