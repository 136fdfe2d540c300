"""The inference path of sampling (no autograd) against the layer-by-layer path: the flows'
fused inverse is bit-identical to each layer's own ``inverse``; with the circuits' inference
strategy (a cached unitary) the showers agree with the gate-by-gate circuits to float rounding."""

from __future__ import annotations

import pytest
import torch

from qcalo.data.geometry import Geometry, Layer
from qcalo.data.preprocessing import PreprocessingStats
from qcalo.models import ModelConfig, build_model
from qcalo.models.blocks import native
from qcalo.models.blocks.conditioners import MLPConditioner
from qcalo.models.blocks.transforms import (
    ActNorm,
    ConditionalAffine,
    ConditionalFlow,
    Coupling,
    FlowLayer,
    Permutation,
)
from qcalo.quantum import QuantumLayer

from .helpers import randomize_heads

needs_kernel = pytest.mark.skipif(
    native.load(quiet=True) is None, reason="no C compiler: the eager path is the only one"
)

SMALL = Geometry(
    "small", "photon", (Layer(0, (0, 1, 2), 1), Layer(1, (0, 1, 2, 3), 2), Layer(2, (0, 5, 9), 1))
)  # 2+6+2 voxels
STATS = PreprocessingStats(
    e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.3, n_layers=3, n_voxels=10
)


def _model(conditioner: str, mixer: str = "permutation", dtype: torch.dtype = torch.float32):
    block = {
        "n_blocks": 3,
        "hidden": [8],
        "spline_bins": 6,
        "conditioner": conditioner,
        "mixer": mixer,
        "circuit": {"n_qubits": 4, "n_layers": 2, "entangler": "linear"},
    }
    config = ModelConfig.from_dict({"stage1": block, "stage2": block})
    torch.manual_seed(0)
    model = build_model(config, SMALL, STATS).to(dtype)
    randomize_heads(model, scale=0.3)
    gen = torch.Generator().manual_seed(1)
    e_inc = 2.0 ** (8 + 8 * torch.rand(64, generator=gen, dtype=torch.float64))
    showers = torch.rand(64, 10, generator=gen, dtype=torch.float64) * e_inc[:, None] / 10 + 0.01
    model.train()
    model.log_prob(e_inc, showers)  # data-dependent ActNorm / context initialisation
    with torch.no_grad():  # ActNorms away from their initial values
        for sub in model.modules():
            if isinstance(sub, ActNorm):
                sub.log_scale.add_(0.2 * torch.randn(sub.log_scale.shape, generator=gen).to(dtype))
                sub.shift.add_(0.2 * torch.randn(sub.shift.shape, generator=gen).to(dtype))
    return model.eval()


def _layerwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ConditionalFlow, "inverse", ConditionalFlow.layerwise_inverse)


@needs_kernel
@pytest.mark.parametrize("batch", [1, 7, 300])
def test_flow_inference_inverse_is_bit_identical_to_the_layers_inverse(batch: int) -> None:
    torch.manual_seed(0)
    layers: list[FlowLayer] = [ConditionalAffine(12, 3, [8])]
    for block in range(4):
        layers.append(ActNorm(12))
        layers.append(Coupling(12, 3, "spline", lambda i, o: MLPConditioner(i, o, [16]), bins=8))
        layers.append(Permutation.random(12, block))
    flow = ConditionalFlow(12, layers).eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    z, context = torch.randn(batch, 12) * 2, torch.randn(batch, 3)
    with torch.no_grad():
        fast = flow.inverse(z, context)
        slow = flow.layerwise_inverse(z, context)
    assert torch.equal(fast, slow)


@needs_kernel
@pytest.mark.parametrize("conditioner", ["mlp", "hybrid", "quantum"])
@pytest.mark.parametrize("mixer", ["permutation", "quantum"])
def test_sampling_from_noise_matches_the_layerwise_path(
    conditioner: str, mixer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same noise → same showers: the inference path against the layer-by-layer inverse with
    every circuit on the gate-by-gate strategy (what ``auto`` took before, and PennyLane's
    reference in tests/quantum), within float32 rounding (rtol 1e-5)."""
    model = _model(conditioner, mixer)
    gen = torch.Generator().manual_seed(2)
    for batch in (1, 5, 200):
        e_inc = 2.0 ** (8 + 8 * torch.rand(batch, generator=gen))
        torch.manual_seed(batch)
        noise = model.draw_noise(batch)
        fast, fast_layers = model.sample_from_noise_with_layer_energies(e_inc, noise)
        with monkeypatch.context() as m:
            _layerwise(m)
            for sub in model.modules():
                if isinstance(sub, QuantumLayer):
                    m.setattr(sub, "strategy", "gates")
            slow, slow_layers = model.sample_from_noise_with_layer_energies(e_inc, noise)
        torch.testing.assert_close(fast_layers, slow_layers, rtol=1e-5, atol=1e-6)
        scale = slow.abs().amax(dim=1, keepdim=True).clamp_min(1e-3)
        torch.testing.assert_close(fast / scale, slow / scale, rtol=1e-5, atol=1e-5)
        if conditioner == "mlp":  # no circuit: not a bit changes
            assert torch.equal(fast, slow)


@needs_kernel
def test_inference_path_follows_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling after a change of the weights (an optimiser step; an assignment through
    ``.data``) uses the new weights: nothing derived from the old ones is kept."""
    model = _model("hybrid")
    e_inc = torch.full((3,), 4096.0)
    torch.manual_seed(5)
    noise = model.draw_noise(3)
    before = model.sample_from_noise(e_inc, noise)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(3)
    e, showers = torch.full((16,), 2048.0), torch.rand(16, 10, generator=gen) * 200 + 0.01
    (-model.log_prob(e, showers)["total"].mean()).backward()
    opt.step()
    for sub in model.modules():
        if isinstance(sub, QuantumLayer):
            sub.rotation_weights.data = sub.rotation_weights.data + 0.1
    model.eval()
    after = model.sample_from_noise(e_inc, noise)
    assert not torch.allclose(before, after)
    with monkeypatch.context() as m:
        _layerwise(m)
        for sub in model.modules():
            if isinstance(sub, QuantumLayer):
                m.setattr(sub, "strategy", "gates")
        reference = model.sample_from_noise(e_inc, noise)
    scale = reference.abs().amax(dim=1, keepdim=True).clamp_min(1e-3)
    torch.testing.assert_close(after / scale, reference / scale, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_sampling_with_gradients_on_takes_the_layerwise_path() -> None:
    """Inverse with autograd (e.g. a loss through samples) stays differentiable."""
    model = _model("mlp")
    z = torch.randn(4, 10, requires_grad=True)
    context = torch.randn(4, 4)
    out = model.stage2.inverse(z, context)
    assert out.requires_grad
