"""The fully quantum coupling (issue 11): s and t of an affine coupling from one circuit's
measurements with only elementwise scaling around it."""

from __future__ import annotations

import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.models.blocks.conditioners import FullyQuantumConditioner
from qcalo.models.blocks.config import FlowConfig
from qcalo.models.blocks.flow import build_flow
from qcalo.quantum import CircuitSpec
from qcalo.quantum.registry import circuit_parameters


def _flow(measurements=("z", "zz"), coupling="affine"):
    config = FlowConfig.model_validate(
        {
            "n_blocks": 2,
            "coupling": coupling,
            "hidden": [8],
            "conditioner": "full_quantum",
            "circuit": {"n_qubits": 4, "n_layers": 2, "measurements": list(measurements)},
        }
    )
    torch.manual_seed(0)
    return build_flow(config, 5, 1, seed=3).double()


def test_only_the_circuit_and_elementwise_scales_are_trained():
    torch.manual_seed(0)
    spec = CircuitSpec(n_qubits=4, n_layers=2, measurements=("z", "zz"))
    net = FullyQuantumConditioner(3, 6, spec)
    names = {name for name, _ in net.named_parameters()}
    assert names == {
        "input_scale",
        "input_shift",
        "output_scale",
        "output_shift",
        "circuit.rotation_weights",
    }
    assert not any(isinstance(m, torch.nn.Linear) for m in net.modules())
    # wires beyond the inputs re-use them cyclically
    assert net.wire_input.tolist() == [0, 1, 2, 0]


def test_block_starts_as_identity_and_log_det_matches_autograd():
    flow = _flow()
    x, c = torch.randn(4, 5, dtype=torch.float64), torch.rand(4, 1, dtype=torch.float64)
    z, ladj = flow(x, c)
    # ActNorm and permutations are not the identity; the couplings are (zero output scale),
    # so inverting recovers x and the log-det is the ActNorms' alone.
    torch.testing.assert_close(flow.inverse(z, c), x, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        for layer in flow.layers:
            for name, p in layer.named_parameters():
                if name.endswith("output_scale"):
                    p.normal_(0, 0.5)
    ladj = flow(x, c)[1].detach()
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: flow(v[None], c[i : i + 1])[0][0], x[i]
        )
        assert float(ladj[i]) == pytest.approx(
            float(torch.linalg.slogdet(jac).logabsdet), rel=1e-6, abs=1e-8
        )


def test_circuit_weights_learn_after_the_first_step():
    flow = _flow()
    x, c = torch.randn(64, 5, dtype=torch.float64), torch.rand(64, 1, dtype=torch.float64)
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        loss = -flow.log_prob(x, c).mean()
        loss.backward()
        opt.step()
    grads = [p.grad for p in circuit_parameters(flow)]
    assert grads and all(g is not None for g in grads)
    assert max(float(g.abs().max()) for g in grads if g is not None) > 1e-6


def test_too_few_measurements_is_a_config_error():
    with pytest.raises(ConfigError, match="measure 'zz' too"):
        _flow(measurements=("z",), coupling="spline")
