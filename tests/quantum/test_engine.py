"""The fused circuit engine: adjoint and unitary paths against PennyLane and finite differences,
the final QFT, merging of repeated input rows, and memory that does not grow with depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcalo.quantum import CircuitSpec, QuantumLayer
from qcalo.quantum.layer import unique_rows
from qcalo.quantum.torch_backend import (
    AUTOGRAD_MEMORY_BUDGET,
    autograd_state_bytes,
    choose_strategy,
    ideal_flops,
)


def _load_sibling(name: str):
    """The existing PennyLane comparison's specs and helpers (tests/quantum is not a package)."""
    import importlib.util
    from pathlib import Path

    location = Path(__file__).with_name(f"{name}.py")
    module_spec = importlib.util.spec_from_file_location(f"_qcalo_engine_{name}", location)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


_comparison = _load_sibling("test_torch_vs_pennylane")
SPECS: list[CircuitSpec] = _comparison.SPECS
_outputs_and_grads = _comparison._outputs_and_grads


def _spec_id(s: CircuitSpec) -> str:
    return (
        f"{s.n_qubits}q{s.n_layers}L-{s.embedding}{'r' if s.reupload else ''}-{s.rotations}-"
        f"{s.entangler}-{s.entangler_gate}-{'+'.join(s.measurements)}{'-qft' if s.final_qft else ''}"
    )


def _inputs(spec: CircuitSpec, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand((batch, spec.n_qubits), generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    cotangent = torch.randn((batch, spec.n_outputs), generator=gen, dtype=torch.float64)
    return x, cotangent


def _check_against_pennylane(spec: CircuitSpec, strategies: list[str], seed: int) -> None:
    x, cotangent = _inputs(spec, 2, seed)
    reference = QuantumLayer(
        spec, backend="pennylane", dtype=torch.complex128, seed=7, diff_method="backprop"
    )
    ref_out, ref_dx, ref_dw = _outputs_and_grads(reference, x, cotangent)
    for strategy in strategies:
        layer = QuantumLayer(spec, dtype=torch.complex128, seed=7, strategy=strategy)
        out, dx, dw = _outputs_and_grads(layer, x, cotangent)
        torch.testing.assert_close(out, ref_out, atol=1e-8, rtol=0)
        torch.testing.assert_close(dx, ref_dx, atol=1e-8, rtol=0)
        for g, ref_g in zip(dw, ref_dw, strict=True):
            torch.testing.assert_close(g, ref_g, atol=1e-8, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
def test_adjoint_matches_pennylane(spec: CircuitSpec):
    # Every option combination of the existing comparison, on the adjoint path and the NumPy
    # small path, at batch 2 (test_torch_vs_pennylane runs batches 1 and 3 through them too).
    _check_against_pennylane(spec, ["adjoint", "small"], seed=spec.n_qubits * 10 + spec.n_layers)


QFT_SPECS = [
    CircuitSpec(
        n_qubits=3,
        n_layers=2,
        embedding="X",
        rotations="rot",
        entangler="ring",
        entangler_gate="crz",
        measurements=("probs", "z"),
        final_qft=True,
    ),
    CircuitSpec(
        n_qubits=4,
        n_layers=2,
        embedding="Z",
        reupload=True,
        entangler_gate="isingzz",
        measurements=("zz", "state"),
        final_qft=True,
    ),
    CircuitSpec(
        n_qubits=2,
        n_layers=1,
        embedding="Y",
        entangler_gate="cnot",
        measurements=("probs",),
        final_qft=True,
    ),
]


@pytest.mark.parametrize("spec", QFT_SPECS, ids=_spec_id)
def test_final_qft_matches_pennylane(spec: CircuitSpec):
    strategies = ["adjoint", "gates", "small"] + ([] if spec.reupload else ["unitary"])
    _check_against_pennylane(spec, strategies, seed=3)


def test_final_qft_changes_the_measured_basis():
    spec = CircuitSpec(n_qubits=3, n_layers=1, measurements=("probs",))
    x = torch.rand(4, 3, dtype=torch.float64)
    plain = QuantumLayer(spec, dtype=torch.complex128, seed=0)
    qft = QuantumLayer(spec.model_copy(update={"final_qft": True}), dtype=torch.complex128, seed=0)
    state = plain.statevector(x)
    expected = torch.fft.ifft(state, dim=1, norm="ortho")
    torch.testing.assert_close(qft.statevector(x), expected)
    torch.testing.assert_close(qft(x), expected.abs().square())


@pytest.mark.parametrize("strategy", ["adjoint", "unitary"])
@pytest.mark.parametrize(
    "spec",
    [
        CircuitSpec(
            n_qubits=3,
            n_layers=3,
            embedding="X",
            rotations="rot",
            entangler="ring",
            entangler_gate="crz",
            measurements=("z", "probs", "state"),
            final_qft=True,
        ),
        CircuitSpec(
            n_qubits=4,
            n_layers=2,
            embedding="Z",
            entangler="all_to_all",
            entangler_gate="isingzz",
            measurements=("zz", "probs"),
        ),
    ],
    ids=_spec_id,
)
def test_fused_gradients_match_finite_differences(spec: CircuitSpec, strategy: str):
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=2, strategy=strategy)
    x, cotangent = _inputs(spec, 3, seed=5)
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def loss(x_, *weights):
        out = layer._torch_circuit.features(x_, *weights, strategy=strategy)
        return (out * cotangent).sum()

    assert torch.autograd.gradcheck(loss, (x.clone().requires_grad_(True), *params))


def test_probs_gradient_of_a_deep_adjoint_circuit_matches_gates():
    # A larger register and depth than the PennyLane comparison: the adjoint path equals the
    # autograd path on probabilities and their gradients.
    spec = CircuitSpec(
        n_qubits=9,
        n_layers=6,
        embedding="Y",
        reupload=True,
        rotations="rot",
        entangler="ring",
        entangler_gate="cnot",
        measurements=("probs",),
    )
    x, cotangent = _inputs(spec, 3, seed=9)
    results = []
    for strategy in ["adjoint", "gates"]:
        layer = QuantumLayer(spec, dtype=torch.complex128, seed=4, strategy=strategy)
        results.append(_outputs_and_grads(layer, x, cotangent))
    (out_a, dx_a, dw_a), (out_g, dx_g, dw_g) = results
    torch.testing.assert_close(out_a, out_g, atol=1e-12, rtol=0)
    torch.testing.assert_close(dx_a, dx_g, atol=1e-10, rtol=0)
    torch.testing.assert_close(dw_a[0], dw_g[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("strategy", ["adjoint", "unitary"])
def test_second_derivatives_through_fused_paths(strategy):
    spec = CircuitSpec(n_qubits=3, n_layers=2, entangler_gate="crz", measurements=("probs",))
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=1, strategy=strategy)
    reference = QuantumLayer(spec, dtype=torch.complex128, seed=1, strategy="gates")
    x = torch.rand(3, 3, dtype=torch.float64)
    results = []
    for lay in (layer, reference):
        xr = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(lay(xr)[:, 1].sum(), xr, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), list(lay.parameters())))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# Repeated input rows (a batch conditioned on a few distinct E_inc)


def test_unique_rows_exact_and_none_without_repeats():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    rows, inverse = unique_rows(x)
    assert rows.shape == (3, 2)
    assert torch.equal(rows[inverse], x)
    assert unique_rows(torch.rand(6, 3)) is None
    # Rows whose 1-D keys collide are still told apart exactly.
    collide = torch.tensor([[2.0, 1.0], [1.0, 1.5], [2.0, 1.0]], dtype=torch.float64)
    # keys: 2·1 + 1·2 = 4 and 1·1 + 1.5·2 = 4 collide; the grouping falls back to unique(dim=0).
    rows, inverse = unique_rows(collide)
    assert rows.shape == (2, 2) and torch.equal(rows[inverse], collide)
    assert unique_rows(torch.tensor([[float("nan")], [float("nan")]])) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_unique_rows_groups_equal_rows_wherever_they_sit_in_the_batch(dtype):
    # A matrix-vector key (rows @ weights) rounded equal rows differently by their position in
    # BLAS's vector blocks on some CPUs, splitting 4 distinct rows into 5 groups for ~1 in 3
    # random draws; 50 draws make that failure certain.
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        distinct = torch.rand(4, 5, generator=generator, dtype=torch.float64).to(dtype) * 3
        picks = torch.randint(0, 4, (37,), generator=generator)
        picks[:4] = torch.arange(4)
        x = distinct[picks]
        rows, inverse = unique_rows(x)
        assert rows.shape == (4, 5)
        assert torch.equal(rows[inverse], x)


@pytest.mark.parametrize("strategy", ["auto", "adjoint", "unitary"])
def test_dedupe_gives_the_same_outputs_and_weight_gradients(strategy):
    spec = CircuitSpec(
        n_qubits=5, n_layers=3, entangler_gate="crz", measurements=("probs", "z"), final_qft=True
    )
    energies = torch.rand(4, 5, dtype=torch.float64) * 3
    x = energies[torch.tensor([0, 1, 0, 2, 3, 3, 0, 1, 2, 2])]  # 10 rows, 4 distinct
    cotangent = torch.randn(10, spec.n_outputs, dtype=torch.float64)
    results = []
    for dedupe in (True, False):
        layer = QuantumLayer(spec, dtype=torch.complex128, seed=3, strategy=strategy, dedupe=dedupe)
        calls: list[int] = []

        def counted(rows, *a, _original=layer._torch_circuit.features, _calls=calls, **k):
            _calls.append(rows.shape[0])
            return _original(rows, *a, **k)

        layer._torch_circuit.features = counted  # type: ignore[method-assign]
        out = layer(x)
        (out * cotangent).sum().backward()
        results.append((out.detach(), [p.grad for p in layer.parameters()], calls))
    (out_d, grads_d, calls_d), (out_n, grads_n, calls_n) = results
    assert calls_d == [4] and calls_n == [10]
    torch.testing.assert_close(out_d, out_n, atol=1e-12, rtol=0)
    for a, b in zip(grads_d, grads_n, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_dedupe_keeps_rows_that_need_an_input_gradient():
    spec = CircuitSpec(n_qubits=4, n_layers=2)
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=0, dedupe=True)
    x = torch.rand(2, 4, dtype=torch.float64)[[0, 1, 0]].requires_grad_(True)
    cotangent = torch.tensor([[1.0], [0.0], [-2.0]], dtype=torch.float64).expand(3, 4)
    (layer(x) * cotangent).sum().backward()
    reference = QuantumLayer(spec, dtype=torch.complex128, seed=0, dedupe=False)
    xr = x.detach().clone().requires_grad_(True)
    (reference(xr) * cotangent).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)  # per row, not summed into one representative


def test_dedupe_auto_only_for_costly_circuits():
    small = CircuitSpec(n_qubits=6, n_layers=2)
    assert sum(ideal_flops(small)) < 2**17  # the benchmark circuit: no look for repeats
    layer = QuantumLayer(small, seed=0)
    assert layer._unique_rows(torch.zeros(8, 6)) is None
    big = QuantumLayer(CircuitSpec(n_qubits=10, n_layers=2), seed=0)
    merged = big._unique_rows(torch.zeros(8, 10))
    assert merged is not None and merged[0].shape == (1, 10)


# ---------------------------------------------------------------------------------------------
# Strategy choice and cost model


def test_auto_takes_the_adjoint_path_when_autograd_memory_would_be_large():
    spec = CircuitSpec(n_qubits=16, n_layers=4, reupload=True, measurements=("probs",))
    assert autograd_state_bytes(spec, 64) > AUTOGRAD_MEMORY_BUDGET
    assert choose_strategy(spec, 64) == "adjoint"
    assert choose_strategy(CircuitSpec(n_qubits=4, n_layers=2, reupload=True), 8) == "gates"
    assert choose_strategy(CircuitSpec(n_qubits=6, n_layers=2), 1000) == "unitary"


def test_auto_takes_the_fused_unitary_path_for_small_registers_at_any_batch():
    # Its matrix costs ~1 ms of kernels plus 0.17·L·D³ ns: below the gate paths' fixed cost up
    # to 6 qubits (measured 1.2 vs 2.0 ms at batch 1 for 6q×2L), far above it from 10.
    small = CircuitSpec(n_qubits=6, n_layers=2, rotations="rot")
    assert [choose_strategy(small, b) for b in (1, 100, 1000)] == ["unitary"] * 3
    large = CircuitSpec(n_qubits=10, n_layers=2, rotations="rot")
    assert choose_strategy(large, 1) == "gates"


def test_ideal_flops_of_the_benchmark_circuit():
    spec = CircuitSpec(n_qubits=6, n_layers=2, rotations="rot", measurements=("z",))
    forward, backward = ideal_flops(spec)
    # 12 fused gates × 14·64 forward, × 44·64 backward; readout 3·64 + 6 expectations × 2·64.
    assert forward == 12 * 14 * 64 + 3 * 64 + 12 * 64
    assert backward == 12 * 44 * 64 + 3 * 64 + 12 * 64 + 4 * 64
