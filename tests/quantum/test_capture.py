"""State capture: entropies and Bloch vectors against hand cases and PennyLane; files and plots."""

from __future__ import annotations

import math

import pennylane as qml
import pytest
import torch

from qcalo.errors import DataError
from qcalo.quantum import (
    CircuitSpec,
    QuantumLayer,
    StateCapture,
    load_captures,
    plot_entropy_vs_step,
)
from qcalo.quantum.capture import state_summary

LN2 = math.log(2)


def test_entropies_of_hand_states():
    product = torch.zeros(1, 8, dtype=torch.complex128)
    product[0, 5] = 1  # |101⟩
    bell = torch.zeros(1, 4, dtype=torch.complex128)
    bell[0, 0] = bell[0, 3] = 2**-0.5
    ghz = torch.zeros(1, 16, dtype=torch.complex128)
    ghz[0, 0] = ghz[0, 15] = 2**-0.5
    plus_then_bell = torch.kron(torch.tensor([1, 1], dtype=torch.complex128) / 2**0.5, bell[0])[
        None
    ]  # |+⟩⊗Bell
    torch.testing.assert_close(
        state_summary(product)["entropies"],
        torch.zeros(1, 3, dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )
    torch.testing.assert_close(
        state_summary(bell)["entropies"], torch.full((1, 2), LN2, dtype=torch.float64)
    )
    torch.testing.assert_close(
        state_summary(ghz)["entropies"], torch.full((1, 4), LN2, dtype=torch.float64)
    )
    torch.testing.assert_close(
        state_summary(plus_then_bell)["entropies"],
        torch.tensor([[0.0, LN2, LN2]], dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )
    torch.testing.assert_close(
        state_summary(plus_then_bell)["bloch"][0, 0],
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        state_summary(product)["bloch"][0, :, 2],
        torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64),
    )


def test_bloch_vectors_match_pennylane():
    spec = CircuitSpec(
        n_qubits=3,
        n_layers=2,
        embedding="X",
        rotations="rot",
        entangler="ring",
        entangler_gate="crz",
    )
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=11)
    inputs = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.7]], dtype=torch.float64)
    bloch = state_summary(layer.statevector(inputs).detach())["bloch"]

    from qcalo.quantum.pennylane_backend import circuit_function

    body = circuit_function(spec.model_copy(update={"measurements": ("z",)}))
    dev = qml.device("default.qubit", wires=3)

    # Replay the spec's gates from the PennyLane backend, then measure X, Y, Z on every wire.
    def gates_then(measure):
        def qfunc(x, w_rot, w_ent):
            tape = qml.tape.make_qscript(body)(x, w_rot, w_ent)
            for op in tape.operations:
                qml.apply(op)
            return measure()

        return qml.QNode(qfunc, dev)

    expvals = gates_then(
        lambda: [qml.expval(P(i)) for i in range(3) for P in (qml.PauliX, qml.PauliY, qml.PauliZ)]
    )
    w_rot = layer.rotation_weights.detach()
    w_ent = layer.entangler_weights.detach()
    for b in range(2):
        ref = torch.stack([torch.as_tensor(v) for v in expvals(inputs[b], w_rot, w_ent)]).reshape(
            3, 3
        )
        torch.testing.assert_close(bloch[b], ref.to(torch.float64), atol=1e-10, rtol=0)


def test_capture_every_n_training_calls(tmp_path):
    spec = CircuitSpec(n_qubits=3, n_layers=2)
    probe = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])
    capture = StateCapture(probe, every_n_calls=2, out_dir=tmp_path)
    layer = capture.attach(QuantumLayer(spec, seed=0))
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    for step in range(5):
        capture.step = 100 + step
        optimiser.zero_grad()
        layer(torch.rand(4, 3)).sum().backward()
        optimiser.step()
    layer.eval()
    layer(torch.rand(4, 3))  # evaluation calls are not counted
    assert capture.calls == 5
    files = sorted(p.name for p in (tmp_path / "quantum_states").glob("*.pt"))
    assert files == ["capture_000002.pt", "capture_000004.pt"]
    captures = load_captures(tmp_path)
    assert [c["call"] for c in captures] == [2, 4] and [c["step"] for c in captures] == [101, 103]
    last = captures[-1]
    assert (
        last["state"].shape == (2, 8)
        and last["entropies"].shape == (2, 3)
        and last["bloch"].shape == (2, 3, 3)
    )
    torch.testing.assert_close(last["entropies"], state_summary(last["state"])["entropies"])
    torch.testing.assert_close(
        last["state"].abs().square().sum(1), torch.ones(2), atol=1e-5, rtol=0
    )
    assert not torch.allclose(captures[0]["state"], last["state"])
    # Watched from outside: the layer holds no reference to its capture, and detaching stops it.
    assert not any(value is capture for value in vars(layer).values())
    capture.detach()
    layer.train()
    layer(torch.rand(4, 3))
    assert capture.calls == 5
    png = plot_entropy_vs_step(captures, tmp_path / "entropy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_captures_errors(tmp_path):
    with pytest.raises(DataError, match="index.csv"):
        load_captures(tmp_path)
    with pytest.raises(DataError, match="no captures"):
        plot_entropy_vs_step([], tmp_path / "x.png")
