"""qcalo.quantum.device: readout mitigation against closed forms, cost counting, qiskit-aer parity.

The qiskit parts skip without the optional extra ``device`` (qiskit, qiskit-aer,
qiskit-ibm-runtime).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.quantum import CircuitSpec, QuantumLayer
from qcalo.quantum.device import (
    count_circuit_rows,
    mitigate_z,
    mitigated_z_std,
    qiskit_available,
    read_out,
    readout_z,
    shot_seconds,
    z_from_probabilities,
)

needs_qiskit = pytest.mark.skipif(
    not qiskit_available(), reason="qiskit / qiskit-aer not installed (pip install 'qcalo[device]')"
)


def test_readout_z_closed_form_and_mitigation_inverts_it() -> None:
    z = np.linspace(-1, 1, 11)
    e0, e1 = 0.03, 0.08
    # P(read 0) = (1 - e0) P0 + e1 P1, P(read 1) = e0 P0 + (1 - e1) P1, P0 = (1 + z)/2
    p0, p1 = (1 + z) / 2, (1 - z) / 2
    read = ((1 - e0) * p0 + e1 * p1) - (e0 * p0 + (1 - e1) * p1)
    np.testing.assert_allclose(readout_z(z, e0, e1), read, atol=1e-15)
    np.testing.assert_allclose(mitigate_z(read, e0, e1), z, atol=1e-14)
    assert mitigate_z(1.0, e0, e1, clip=True) == 1.0


def test_readout_rates_are_checked() -> None:
    with pytest.raises(ConfigError, match="e0 \\+ e1 < 1"):
        mitigate_z(0.0, 0.6, 0.5)


def test_read_out_matches_the_full_confusion_matrix_and_the_per_wire_form() -> None:
    rng = np.random.default_rng(0)
    n = 3
    probs = rng.dirichlet(np.ones(2**n), size=4)
    e0, e1 = np.array([0.01, 0.05, 0.1]), np.array([0.02, 0.07, 0.04])
    # the full 8x8 tensored confusion matrix, wire 0 the least significant bit
    full = np.ones((1, 1))
    for i in reversed(range(n)):  # kron puts its first factor on the most significant bit
        full = np.kron(full, np.array([[1 - e0[i], e1[i]], [e0[i], 1 - e1[i]]]))
    expected = probs @ full.T
    got = read_out(probs, e0, e1)
    np.testing.assert_allclose(got, expected, atol=1e-14)
    # marginal <Z_i> of the read-out distribution: the per-wire closed form
    np.testing.assert_allclose(
        z_from_probabilities(got, n), readout_z(z_from_probabilities(probs, n), e0, e1), atol=1e-14
    )


def test_mitigated_estimate_is_unbiased_with_the_closed_form_spread() -> None:
    rng = np.random.default_rng(1)
    z, e0, e1, shots = 0.4, 0.04, 0.09, 1000
    p_read0 = (1 + readout_z(z, e0, e1)) / 2
    counts0 = rng.binomial(shots, p_read0, size=20000)
    estimates = mitigate_z(2 * counts0 / shots - 1, e0, e1)
    expected_std = float(mitigated_z_std(z, e0, e1, shots))
    assert abs(estimates.mean() - z) < 4 * expected_std / np.sqrt(len(estimates))
    assert estimates.std() == pytest.approx(expected_std, rel=0.03)


def test_shot_seconds() -> None:
    assert shot_seconds(2.7e-6, 250e-6) == pytest.approx(252.7e-6)
    with pytest.raises(ConfigError):
        shot_seconds(-1.0, 0.0)


def test_count_circuit_rows_counts_rows_and_repeats() -> None:
    layer = QuantumLayer(CircuitSpec(n_qubits=2), seed=0)
    net = torch.nn.Sequential(layer)
    x = torch.tensor([[0.1, 0.2], [0.1, 0.2], [0.3, 0.4]])
    rows = count_circuit_rows(net, lambda: (net(x), net(x[:1])))
    assert rows.rows == {"0": 4} and rows.distinct_rows == {"0": 3}
    assert rows.total == 4 and rows.total_distinct == 3
    assert not layer._forward_pre_hooks  # hooks removed


def _layer(spec: CircuitSpec) -> QuantumLayer:
    return QuantumLayer(spec, dtype=torch.complex128, seed=3)


@needs_qiskit
@pytest.mark.parametrize(
    "fields",
    [
        {"n_qubits": 3, "n_layers": 2},
        {"n_qubits": 3, "n_layers": 2, "embedding": "X", "reupload": True, "rotations": "rot"},
        {"n_qubits": 3, "entangler": "ring", "entangler_gate": "crz"},
        {"n_qubits": 3, "entangler_gate": "isingzz"},
    ],
)
def test_noiseless_aer_equals_the_torch_simulator(fields: dict) -> None:
    from qcalo.quantum.device import AerCircuit

    spec = CircuitSpec(**fields)
    layer = _layer(spec)
    x = torch.rand(5, spec.n_qubits, dtype=torch.float64) * 6 - 3
    aer = AerCircuit(spec, layer.rotation_weights, layer.entangler_weights)
    np.testing.assert_allclose(aer.run(x.numpy()), layer(x).detach().numpy(), atol=1e-10)


@needs_qiskit
def test_depolarizing_model_equals_pennylane_default_mixed() -> None:
    from qcalo.quantum.device import AerCircuit, depolarizing_noise_model

    spec = CircuitSpec(n_qubits=3, n_layers=2)
    layer = _layer(spec)
    x = torch.rand(4, 3, dtype=torch.float64) * 6 - 3
    mixed = QuantumLayer(
        spec, "pennylane", dtype=torch.complex128, device_name="default.mixed", depolarizing=0.02
    )
    mixed.load_state_dict(layer.state_dict())
    aer = AerCircuit(spec, layer.rotation_weights, noise_model=depolarizing_noise_model(0.02))
    # same channel; the two simulators round differently at the 1e-8 level
    np.testing.assert_allclose(aer.run(x.numpy()), mixed(x).detach().numpy(), atol=1e-7)


@needs_qiskit
def test_fake_backend_readout_shots_and_mitigation() -> None:
    pytest.importorskip("qiskit_ibm_runtime")
    from qiskit_aer.noise import NoiseModel, ReadoutError
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qcalo.quantum.device import AerCircuit

    spec = CircuitSpec(n_qubits=3, n_layers=2)
    layer = _layer(spec)
    x = np.random.default_rng(2).uniform(-3, 3, (3, 3))
    backend = FakeManilaV2()
    # readout errors only: mitigation must give back the ideal <Z> exactly (no shots)
    noise = NoiseModel.from_backend(backend)
    readout_only = NoiseModel(basis_gates=noise.basis_gates)
    for (q,), error in noise._local_readout_errors.items():
        readout_only.add_readout_error(ReadoutError(error.probabilities), [q])
    ideal = layer(torch.as_tensor(x)).detach().numpy()
    raw = AerCircuit(spec, layer.rotation_weights, backend=backend, noise_model=readout_only)
    assert raw.e0.max() > 0 and len(raw.physical) == 3
    np.testing.assert_allclose(raw.run(x), readout_z(ideal, raw.e0, raw.e1), atol=1e-9)
    fixed = AerCircuit(
        spec, layer.rotation_weights, backend=backend, noise_model=readout_only, mitigate=True
    )
    np.testing.assert_allclose(fixed.run(x), ideal, atol=1e-9)
    # shots: within 5 closed-form standard deviations of the exact read-out value
    shots = AerCircuit(
        spec, layer.rotation_weights, backend=backend, noise_model=readout_only, shots=4000, seed=0
    )
    bound = 5 * mitigated_z_std(ideal, 0, 0, 4000)
    assert np.all(np.abs(shots.run(x) - raw.run(x)) < bound)
    # the full noise model: the scheduled circuit has a positive duration
    full = AerCircuit(spec, layer.rotation_weights, backend=backend)
    assert 0 < full.schedule_seconds(backend) < 1e-3
    assert np.all(np.abs(full.run(x)) <= 1)


@needs_qiskit
def test_on_aer_swaps_every_circuit() -> None:
    from qcalo.quantum.device import AerLayer, on_aer

    net = torch.nn.Sequential(_layer(CircuitSpec(n_qubits=2)), torch.nn.Identity())
    moved = on_aer(net)
    assert isinstance(moved, torch.nn.Sequential)
    assert isinstance(moved[0], AerLayer) and isinstance(net[0], QuantumLayer)
    x = torch.rand(3, 2, dtype=torch.float64)
    torch.testing.assert_close(moved(x), net(x).detach(), atol=1e-10, rtol=0)
