"""The closed-form product circuit against qcalo's statevector engine and PennyLane (values and
gradients), and the trig conditioner against the hybrid conditioner it replaces."""

from __future__ import annotations

import itertools

import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.quantum import CircuitSpec, QuantumLayer
from qcalo.quantum.bloch import ProductCircuit

CASES = [
    dict(n_qubits=n, n_layers=layers, embedding=emb, rotations=rot, reupload=re, measurements=meas)
    for (n, layers, emb, rot, re, meas) in [
        (1, 1, "Y", "ryrz", False, ("z",)),
        (3, 2, "Y", "ryrz", False, ("z", "zz")),
        (4, 3, "X", "rot", True, ("z",)),
        (5, 2, "Z", "ryrz", True, ("zz", "z")),
        (6, 2, "Y", "ryrz", False, ("z",)),  # the hybrid twin's stage-1 circuit, without CNOTs
    ]
]


def _pair(case: dict, seed: int = 0) -> tuple[QuantumLayer, ProductCircuit, torch.Tensor]:
    spec = CircuitSpec(entangler="none", **case)
    torch.manual_seed(seed)
    engine = QuantumLayer(spec, backend="torch", dtype=torch.complex128)
    torch.manual_seed(seed)
    closed = ProductCircuit(spec).double()
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = (torch.rand(7, spec.n_qubits, generator=gen, dtype=torch.float64) - 0.5) * 6
    return engine, closed, inputs


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=lambda c: (
        f"{c['n_qubits']}q{c['n_layers']}L{c['embedding']}{c['rotations']}{'R' if c['reupload'] else ''}"
    ),
)
def test_closed_form_equals_the_statevector_engine_in_value_and_gradient(case: dict) -> None:
    engine, closed, inputs = _pair(case)
    # Same seed, same draws: the closed form holds the engine's weights.
    torch.testing.assert_close(
        closed.rotation_weights, engine.rotation_weights.double(), rtol=0, atol=1e-6
    )
    with torch.no_grad():
        closed.rotation_weights.copy_(engine.rotation_weights.double())
    x1, x2 = inputs.clone().requires_grad_(True), inputs.clone().requires_grad_(True)
    out_engine, out_closed = engine(x1).double(), closed(x2)
    torch.testing.assert_close(out_closed, out_engine, rtol=0, atol=1e-6)
    probe = torch.randn(
        out_engine.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    g_engine = torch.autograd.grad((out_engine * probe).sum(), (x1, engine.rotation_weights))
    g_closed = torch.autograd.grad((out_closed * probe).sum(), (x2, closed.rotation_weights))
    torch.testing.assert_close(g_closed[0], g_engine[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(g_closed[1], g_engine[1].double(), rtol=0, atol=1e-6)


def test_closed_form_equals_pennylane() -> None:
    pytest.importorskip("pennylane")
    case = CASES[2]
    spec = CircuitSpec(entangler="none", **case)
    torch.manual_seed(0)
    reference = QuantumLayer(spec, backend="pennylane", dtype=torch.complex128)
    closed = ProductCircuit(spec).double()
    with torch.no_grad():
        closed.rotation_weights.copy_(reference.rotation_weights.double())
    inputs = torch.linspace(-3, 3, 3 * spec.n_qubits, dtype=torch.float64).reshape(3, -1)
    x1, x2 = inputs.clone().requires_grad_(True), inputs.clone().requires_grad_(True)
    a, b = reference(x1).double(), closed(x2)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    ga = torch.autograd.grad(a.sum(), (x1, reference.rotation_weights))
    gb = torch.autograd.grad(b.sum(), (x2, closed.rotation_weights))
    torch.testing.assert_close(gb[0], ga[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(gb[1], ga[1].double(), rtol=0, atol=1e-6)


def test_one_layer_without_reupload_is_a_single_sinusoid() -> None:
    """⟨Z⟩ = A sin x + B cos x with A² + B² ≤ 1 (the closed form the docstring states)."""
    spec = CircuitSpec(n_qubits=1, n_layers=2, entangler="none")
    torch.manual_seed(4)
    circuit = ProductCircuit(spec).double()
    x = torch.linspace(-3, 3, 50, dtype=torch.float64)[:, None]
    with torch.no_grad():
        y = circuit(x)[:, 0]
    design = torch.stack([torch.sin(x[:, 0]), torch.cos(x[:, 0])], dim=1)
    coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    torch.testing.assert_close(design @ coef, y, rtol=0, atol=1e-12)
    assert float(coef.square().sum()) <= 1 + 1e-12


@pytest.mark.parametrize(
    "changes", [dict(entangler="linear"), dict(final_qft=True), dict(measurements=("probs",))]
)
def test_entangled_or_non_z_circuits_are_refused(changes: dict) -> None:
    fields = dict(n_qubits=3, n_layers=1, entangler="none") | changes
    with pytest.raises(ConfigError, match="product circuit"):
        ProductCircuit(CircuitSpec(**fields))


def test_trig_conditioner_is_the_product_circuit_hybrid_with_the_same_weights() -> None:
    from qcalo.models.blocks.conditioners import (
        HybridConditioner,
        TrigConditioner,
        quantum_parameters,
    )

    spec = CircuitSpec(n_qubits=6, n_layers=2, entangler="none")
    torch.manual_seed(11)
    hybrid = HybridConditioner(9, 12, [16], spec)
    torch.manual_seed(11)
    trig = TrigConditioner(9, 12, [16], spec)
    names_h = [(n, p.shape) for n, p in hybrid.named_parameters()]
    names_t = [(n, p.shape) for n, p in trig.named_parameters()]
    assert names_h == names_t  # same parameters, same names: state dicts interchange
    for (_, p_h), (_, p_t) in zip(hybrid.named_parameters(), trig.named_parameters()):
        torch.testing.assert_close(p_t, p_h.to(p_t.dtype), rtol=0, atol=1e-7)
    for module in (hybrid, trig):
        torch.nn.init.normal_(
            module.head.weight, std=0.3, generator=torch.Generator().manual_seed(2)
        )
    inputs = torch.randn(20, 9, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(trig(inputs), hybrid(inputs), rtol=1e-5, atol=1e-5)
    assert list(quantum_parameters(trig)) == []  # classical: no circuit angles
    assert len(list(quantum_parameters(hybrid))) == 1


def test_trig_without_hidden_widths_is_the_product_circuit_quantum_conditioner() -> None:
    from qcalo.models.blocks.conditioners import QuantumConditioner, TrigConditioner

    spec = CircuitSpec(n_qubits=6, n_layers=2, entangler="none")
    torch.manual_seed(3)
    quantum = QuantumConditioner(5, 10, spec)
    torch.manual_seed(3)
    trig = TrigConditioner(5, 10, [], spec)
    assert [(n, p.shape) for n, p in quantum.named_parameters()] == [
        (n, p.shape) for n, p in trig.named_parameters()
    ]
    for (_, p_q), (_, p_t) in zip(quantum.named_parameters(), trig.named_parameters()):
        torch.testing.assert_close(p_t, p_q.to(p_t.dtype), rtol=0, atol=1e-7)
    for module in (quantum, trig):
        torch.nn.init.normal_(
            module.head.weight, std=0.3, generator=torch.Generator().manual_seed(2)
        )
    inputs = torch.randn(20, 5, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out_q, out_t = quantum(inputs), trig(inputs)
    torch.testing.assert_close(out_t, out_q, rtol=1e-5, atol=1e-5)
    (grad_q,) = torch.autograd.grad(out_q.square().sum(), inputs)
    (grad_t,) = torch.autograd.grad(out_t.square().sum(), inputs)
    torch.testing.assert_close(grad_t, grad_q, rtol=1e-4, atol=1e-5)


def test_a_flow_config_with_trig_needs_a_product_circuit() -> None:
    from qcalo.models.flow.config import ModelConfig

    good = {
        "stage1": {
            "n_blocks": 2,
            "hidden": [8],
            "conditioner": "trig",
            "circuit": {"n_qubits": 3, "entangler": "none"},
        }
    }
    assert ModelConfig.from_dict(good).stage1.conditioners == ["trig", "trig"]
    from qcalo.models import build_flow
    from qcalo.quantum.registry import capturable_circuits

    trig_flow = build_flow(ModelConfig.from_dict(good).stage1, 5, 1)
    assert capturable_circuits(trig_flow) == []  # no state vector for state capture to record
    bad = {
        "stage1": {"n_blocks": 2, "hidden": [8], "conditioner": "trig", "circuit": {"n_qubits": 3}}
    }
    with pytest.raises(ConfigError, match="entangler"):
        ModelConfig.from_dict(bad)


def test_layouts_are_consistent_for_all_small_specs() -> None:
    """Every combination of the small options, values only (fast)."""
    for emb, rot, re in itertools.product("XYZ", ("ryrz", "rot"), (False, True)):
        case = dict(
            n_qubits=2,
            n_layers=2,
            embedding=emb,
            rotations=rot,
            reupload=re,
            measurements=("z", "zz"),
        )
        engine, closed, inputs = _pair(case, seed=7)
        with torch.no_grad():
            closed.rotation_weights.copy_(engine.rotation_weights.double())
            torch.testing.assert_close(closed(inputs), engine(inputs).double(), rtol=0, atol=1e-6)
