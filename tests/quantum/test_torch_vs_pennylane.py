"""The torch backend against PennyLane default.qubit on random circuits covering every option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qcalo.errors import ConfigError, DataError
from qcalo.quantum import CircuitSpec, QuantumLayer

EMBEDDINGS = ["X", "Y", "Z"]
ROTATIONS = ["ryrz", "rot"]
ENTANGLERS = ["none", "linear", "ring", "all_to_all"]
GATES = ["cnot", "cz", "crz", "isingzz"]
MEASUREMENTS = ["z", "zz", "probs", "state"]


def random_specs(count: int, seed: int) -> list[CircuitSpec]:
    """`count` random specs; every option value appears at least once (cycled, then shuffled)."""
    rng = np.random.default_rng(seed)

    def cycle(values):
        order = list(rng.permutation(len(values)))
        return [values[order[i % len(values)]] for i in range(count)]

    qubits = [1, 8] + list(rng.integers(2, 8, size=count - 2))
    layers = cycle([1, 2, 3, 4])
    specs = []
    embed_reupload = cycle(list(itertools.product(EMBEDDINGS, [False, True])))
    for i, ((emb, reup), rot, ent, gate) in enumerate(
        zip(embed_reupload, cycle(ROTATIONS), cycle(ENTANGLERS), cycle(GATES))
    ):
        n = int(qubits[i])
        first = MEASUREMENTS[i % 4] if n > 1 or MEASUREMENTS[i % 4] != "zz" else "z"
        extra = [
            m for m in MEASUREMENTS if m != first and rng.random() < 0.3 and (m != "zz" or n > 1)
        ]
        if n == 8:  # keep the reference fast: no 2^9-wide state readout at 8 qubits
            extra = [m for m in extra if m != "state"]
        specs.append(
            CircuitSpec(
                n_qubits=n,
                n_layers=int(layers[i]),
                embedding=emb,
                reupload=reup,
                rotations=rot,
                entangler=ent,
                entangler_gate=gate,
                measurements=tuple([first] + extra),
            )
        )
    return specs


SPECS = random_specs(24, seed=2024)


def test_random_specs_cover_every_option():
    for field, values in [
        ("embedding", EMBEDDINGS),
        ("rotations", ROTATIONS),
        ("entangler", ENTANGLERS),
        ("entangler_gate", GATES),
    ]:
        assert {getattr(s, field) for s in SPECS} == set(values)
    assert {m for s in SPECS for m in s.measurements} == set(MEASUREMENTS)
    assert {s.n_qubits for s in SPECS} >= {1, 8} and {s.n_layers for s in SPECS} == {1, 2, 3, 4}
    assert {(s.embedding, s.reupload) for s in SPECS} == set(
        itertools.product(EMBEDDINGS, [False, True])
    )


def _outputs_and_grads(layer: QuantumLayer, inputs: torch.Tensor, cotangent: torch.Tensor):
    x = inputs.clone().requires_grad_(True)
    out = layer(x)
    (out * cotangent.to(out.dtype)).sum().backward()
    grads = [p.grad.detach().clone() for p in layer.parameters()]
    return out.detach(), x.grad.detach(), grads


@pytest.mark.parametrize(
    "spec",
    SPECS,
    ids=lambda s: (
        f"{s.n_qubits}q{s.n_layers}L-{s.embedding}{'r' if s.reupload else ''}-{s.rotations}-{s.entangler}-{s.entangler_gate}-{'+'.join(s.measurements)}"
    ),
)
def test_torch_matches_pennylane(spec: CircuitSpec):
    gen = torch.Generator().manual_seed(spec.n_qubits * 100 + spec.n_layers)
    batch = 1 if spec.n_qubits % 2 else 3
    inputs = (
        torch.rand((batch, spec.n_qubits), generator=gen, dtype=torch.float64) * 2 - 1
    ) * np.pi
    cotangent = torch.randn((batch, spec.n_outputs), generator=gen, dtype=torch.float64)

    reference = QuantumLayer(
        spec, backend="pennylane", dtype=torch.complex128, seed=7, diff_method="backprop"
    )
    ref_out, ref_dx, ref_dw = _outputs_and_grads(reference, inputs, cotangent)
    assert ref_out.shape == (batch, spec.n_outputs)

    strategies = ["gates", "small"] if spec.reupload else ["gates", "unitary", "small"]
    for strategy, dtype, tol in [(s, torch.complex128, 1e-6) for s in strategies] + [
        ("auto", torch.complex64, 1e-4)
    ]:
        layer = QuantumLayer(spec, dtype=dtype, seed=7, strategy=strategy)
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        out, dx, dw = _outputs_and_grads(layer, inputs.to(real), cotangent)
        assert out.dtype == real
        torch.testing.assert_close(out.double(), ref_out, atol=tol, rtol=0)
        with torch.no_grad():  # inference: "auto" takes the cached unitary where it applies
            for _ in range(2):  # built, then reused
                no_grad = layer(inputs.to(real)).double()
                torch.testing.assert_close(no_grad, ref_out, atol=tol, rtol=0)
        torch.testing.assert_close(dx.double(), ref_dx, atol=tol, rtol=0)
        for g, ref_g in zip(dw, ref_dw, strict=True):
            torch.testing.assert_close(g.double(), ref_g, atol=tol, rtol=0)


def test_probabilities_sum_to_one_and_state_is_normalised():
    spec = CircuitSpec(
        n_qubits=5,
        n_layers=3,
        embedding="X",
        reupload=True,
        rotations="rot",
        entangler="ring",
        entangler_gate="isingzz",
        measurements=("probs", "state"),
    )
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=1)
    out = layer(torch.randn(16, 5, dtype=torch.float64))
    probs, state = out[:, :32], out[:, 32:]
    torch.testing.assert_close(probs.sum(1), torch.ones(16, dtype=torch.float64))
    torch.testing.assert_close(state.square().sum(1), torch.ones(16, dtype=torch.float64))
    assert (probs >= 0).all()


def test_hand_worked_bell_circuit():
    # RY(π/2) on wire 0 then CNOT(0,1): (|00⟩+|11⟩)/√2, independent of the (zeroed) rotations.
    spec = CircuitSpec(
        n_qubits=2,
        n_layers=1,
        embedding="Y",
        entangler="linear",
        entangler_gate="cnot",
        measurements=("z", "zz", "probs"),
    )
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=0)
    with torch.no_grad():
        layer.rotation_weights.zero_()
    out = layer(torch.tensor([np.pi / 2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(
        out, torch.tensor([0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.5], dtype=torch.float64)
    )


def test_unbatched_input_and_output_shapes():
    spec = CircuitSpec(n_qubits=3, n_layers=2, measurements=("z", "zz"))
    layer = QuantumLayer(spec, seed=3)
    assert layer.n_outputs == 6
    x = torch.rand(4, 3)
    torch.testing.assert_close(layer(x[1]), layer(x)[1])


def test_seed_reproducible_and_generator_used():
    spec = CircuitSpec(n_qubits=3, n_layers=2, entangler_gate="crz")
    a, b = QuantumLayer(spec, seed=5), QuantumLayer(spec, seed=5)
    c = QuantumLayer(spec, generator=torch.Generator().manual_seed(5))
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p, r)
    assert not torch.equal(a.rotation_weights, QuantumLayer(spec, seed=6).rotation_weights)


def test_double_switches_to_complex128():
    spec = CircuitSpec(n_qubits=4, n_layers=2, reupload=True)
    layer = QuantumLayer(spec, seed=0)
    x = torch.rand(3, 4, dtype=torch.float64)
    out32 = layer(x)
    layer.double()
    assert layer.statevector(x).dtype == torch.complex128
    torch.testing.assert_close(layer(x), out32, atol=1e-5, rtol=0)


def test_user_errors_are_clear():
    with pytest.raises(ConfigError, match="n_qubits"):
        CircuitSpec.build(n_qubits=0)
    with pytest.raises(ConfigError, match="embedding"):
        CircuitSpec.build(n_qubits=2, embedding="W")
    with pytest.raises(ConfigError, match="backend"):
        QuantumLayer(CircuitSpec(n_qubits=2), backend="qiskit")
    with pytest.raises(ConfigError, match="no.such.device"):
        QuantumLayer(CircuitSpec(n_qubits=2), backend="pennylane", device_name="no.such.device")
    with pytest.raises(ConfigError, match="diff_method"):
        QuantumLayer(CircuitSpec(n_qubits=2), backend="pennylane", diff_method="magic")
    with pytest.raises(ConfigError, match="state"):
        QuantumLayer(CircuitSpec(n_qubits=2, measurements="state"), backend="pennylane", shots=100)
    with pytest.raises(DataError, match=r"\(batch, 2\)"):
        QuantumLayer(CircuitSpec(n_qubits=2))(torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="repeats"):
        CircuitSpec.build(n_qubits=2, measurements=("z", "z"))


def test_spec_counts():
    spec = CircuitSpec(
        n_qubits=4,
        n_layers=3,
        rotations="rot",
        entangler="all_to_all",
        entangler_gate="isingzz",
        measurements=("z", "zz", "probs", "state"),
    )
    assert spec.n_outputs == 4 + 6 + 16 + 32
    assert spec.n_weights == 3 * 4 * 3 + 3 * 6
    assert len(list(itertools.chain(spec.entangler_pairs))) == 6
    assert CircuitSpec(n_qubits=2, entangler="ring").entangler_pairs == [(0, 1)]
    assert CircuitSpec(n_qubits=3, entangler="ring").entangler_pairs == [(0, 1), (1, 2), (2, 0)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    spec = CircuitSpec(
        n_qubits=5,
        n_layers=3,
        reupload=True,
        entangler_gate="crz",
        measurements=("z", "zz", "probs"),
    )
    layer = QuantumLayer(spec, seed=0, dtype=torch.complex128)
    x = torch.rand(7, 5, dtype=torch.float64)
    expected = layer(x)
    layer.cuda()
    torch.testing.assert_close(layer(x.cuda()).cpu(), expected)
