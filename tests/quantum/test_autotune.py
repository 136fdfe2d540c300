"""``strategy="auto"`` chooses by measurement: candidates, memo, persisted choices, RNG hygiene;
and the NumPy ``"small"`` strategy's own checks (PennyLane comparisons are in
test_torch_vs_pennylane and test_engine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qcalo.quantum import CircuitSpec, QuantumLayer, autotune, small
from qcalo.quantum.torch_backend import TorchCircuit

SPEC = CircuitSpec(n_qubits=4, n_layers=2, rotations="rot", measurements=("z",))
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QCALO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("QCALO_AUTOTUNE", "1")  # timing is opt-in
    monkeypatch.delenv("QCALO_AUTOTUNE_CACHE", raising=False)
    autotune.clear()
    yield tmp_path / "strategies.json"
    autotune.clear()


def test_bucket_is_the_next_power_of_two():
    assert [autotune.bucket(b) for b in (1, 2, 3, 100, 128, 1000)] == [1, 2, 4, 128, 128, 1024]


def test_candidates_respect_reupload_device_and_memory():
    assert autotune.candidates(SPEC, 8, CPU, torch.float32) == [
        "unitary",
        "small",
        "gates",
        "adjoint",
    ]
    reupload = SPEC.model_copy(update={"reupload": True})
    assert "unitary" not in autotune.candidates(reupload, 8, CPU, torch.float32)
    assert "small" not in autotune.candidates(SPEC, 8, torch.device("meta"), torch.float32)
    big = CircuitSpec(n_qubits=12, n_layers=4, reupload=True)
    assert small.small_bytes(big, 1000) > small.SMALL_MEMORY_BUDGET
    assert autotune.candidates(big, 1000, CPU, torch.float32) == ["adjoint"]


def test_auto_measures_once_persists_and_leaves_the_global_rng_alone(cache, monkeypatch):
    circuit = TorchCircuit(SPEC)
    state = torch.get_rng_state()
    choice = autotune.choose(circuit, 5, CPU, torch.float64)
    assert torch.equal(torch.get_rng_state(), state)
    assert choice in autotune.candidates(SPEC, 8, CPU, torch.float64)
    data = json.loads(cache.read_text())
    (entries,) = data.values()
    (entry,) = entries.values()
    assert entry["choice"] == choice and set(entry["ms"]) == {
        "unitary",
        "small",
        "gates",
        "adjoint",
    }
    # Same process: memoised. A new process (memo cleared, new circuit): read from the file.
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert autotune.choose(circuit, 5, CPU, torch.float64) == choice
    autotune.clear()
    assert autotune.choose(TorchCircuit(SPEC), 7, CPU, torch.float64) == choice  # same bucket


def test_a_persisted_choice_wins_over_measuring(cache, monkeypatch):
    circuit = TorchCircuit(SPEC)
    key = autotune._key(SPEC, 4, CPU, torch.float64, True)
    cache.write_text(json.dumps({autotune._machine_key(): {key: {"choice": "adjoint"}}}))
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: pytest.fail("measured"))
    assert autotune.choose(circuit, 3, CPU, torch.float64) == "adjoint"


def test_autotune_off_uses_the_cost_model_without_timing(cache, monkeypatch):
    monkeypatch.setenv("QCALO_AUTOTUNE", "0")
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: pytest.fail("measured"))
    assert autotune.choose(TorchCircuit(SPEC), 100, CPU, torch.float32) == "unitary"
    assert not cache.exists()


def test_auto_gives_the_chosen_strategys_numbers_exactly(cache):
    layer = QuantumLayer(SPEC, dtype=torch.complex128, seed=1)
    x = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    chosen = autotune.choose(layer._torch_circuit, 3, CPU, torch.float64, True)
    forced = QuantumLayer(SPEC, dtype=torch.complex128, seed=1, strategy=chosen)
    xf = x.detach().clone().requires_grad_(True)
    out_f = forced(xf)
    out_f.sum().backward()
    assert torch.equal(out, out_f) and torch.equal(x.grad, xf.grad)
    assert torch.equal(layer.rotation_weights.grad, forced.rotation_weights.grad)


def test_inference_and_training_are_measured_apart(cache):
    layer = QuantumLayer(SPEC, seed=0)
    with torch.no_grad():
        layer(torch.rand(2, 4))
    layer(torch.rand(2, 4)).sum().backward()
    (entries,) = json.loads(cache.read_text()).values()
    assert sorted(key.split("|")[4] for key in entries) == ["infer", "train"]


def test_small_refuses_tensors_off_the_cpu():
    with pytest.raises(ValueError, match="CPU"):
        TorchCircuit(SPEC).resolve_strategy("small", 1, device=torch.device("meta"))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_small_matches_gates_in_both_precisions_with_trainable_entanglers(dtype):
    spec = CircuitSpec(
        n_qubits=5,
        n_layers=3,
        embedding="X",
        reupload=True,
        rotations="ryrz",
        entangler="ring",
        entangler_gate="crz",
        measurements=("z", "zz", "probs"),
    )
    x = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    results = []
    for strategy in ("gates", "small"):
        layer = QuantumLayer(spec, dtype=dtype, seed=5, strategy=strategy)
        xs = x.to(layer.rotation_weights.dtype).requires_grad_(True)
        out = layer(xs)
        (out * torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)).sum().backward()
        results.append([out.detach(), xs.grad] + [p.grad for p in layer.parameters()])
    tol = 1e-12 if dtype == torch.complex128 else 2e-5
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_small_state_and_inference_match_gates():
    spec = CircuitSpec(n_qubits=3, n_layers=2, entangler_gate="cz", final_qft=True)
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=2, strategy="small")
    reference = QuantumLayer(spec, dtype=torch.complex128, seed=2, strategy="gates")
    x = torch.rand(4, 3, dtype=torch.float64)
    torch.testing.assert_close(layer.statevector(x), reference.statevector(x), atol=1e-12, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x), atol=1e-12, rtol=0)


def test_small_only_weight_or_only_input_gradients():
    spec = CircuitSpec(n_qubits=4, n_layers=2, reupload=True, rotations="rot")
    layer = QuantumLayer(spec, dtype=torch.complex128, seed=3, strategy="small")
    reference = QuantumLayer(spec, dtype=torch.complex128, seed=3, strategy="gates")
    x = torch.rand(3, 4, dtype=torch.float64)
    for lay in (layer, reference):
        lay(x).sum().backward()  # weights only
    torch.testing.assert_close(layer.rotation_weights.grad, reference.rotation_weights.grad)
    grads = []
    for lay in (layer, reference):
        lay.requires_grad_(False)
        xi = x.clone().requires_grad_(True)
        lay(xi).sum().backward()  # inputs only
        grads.append(xi.grad)
    torch.testing.assert_close(*grads)
    assert np.isfinite(grads[0].numpy()).all()
