"""Bring your own circuit: a user's PennyLane function on qcalo's engine, against PennyLane.

Every engine result is compared with the same function run as a QNode on ``default.qubit``
(float64, backprop): values and gradients with respect to inputs and every weight to 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.models import FlowConfig, ModelConfig
from qcalo.models.blocks.flow import build_flow
from qcalo.quantum import from_pennylane
from qcalo.quantum.pennylane_import import PennyLaneFunctionLayer, UserCircuit
from qcalo.quantum.registry import circuit_parameters

TOL = 1e-6

SINGLE_FIXED = ["Hadamard", "PauliX", "PauliY", "PauliZ", "S", "T", "SX"]
SINGLE_PARAM = {"RX": 1, "RY": 1, "RZ": 1, "PhaseShift": 1, "Rot": 3}
TWO_FIXED = ["CNOT", "CZ", "SWAP", "CY"]
TWO_PARAM = {
    "CRX": 1,
    "CRY": 1,
    "CRZ": 1,
    "CRot": 3,
    "ControlledPhaseShift": 1,
    "IsingXX": 1,
    "IsingYY": 1,
    "IsingZZ": 1,
}
THREE_FIXED = ["Toffoli", "CSWAP", "CCZ"]


def random_circuit(seed: int, n_qubits: int, n_inputs: int, n_weights: int):
    """A random circuit function over the engine's gate set, templates and measurements.

    Each gate parameter is an affine function a·inputs[i] + c·w[j] + b, a weight, an input or a
    constant; the recipe is drawn once, so the function is the same on every call.
    """
    rng = np.random.default_rng(seed)
    n = n_qubits
    recipe: list[tuple] = []
    if rng.random() < 0.5:
        recipe.append(("AngleEmbedding", str(rng.choice(["X", "Y", "Z"]))))
    for _ in range(int(rng.integers(6, 14))):
        pool = ["single_fixed", "single_param"]
        if n >= 2:
            pool += ["two_fixed", "two_param", "multirz"]
        if n >= 3:
            pool += ["three_fixed"]
        kind = str(rng.choice(pool))
        if kind == "single_fixed":
            recipe.append((str(rng.choice(SINGLE_FIXED)), [int(rng.integers(n))], []))
        elif kind == "single_param":
            name = str(rng.choice(list(SINGLE_PARAM)))
            recipe.append(
                (
                    name,
                    [int(rng.integers(n))],
                    _params(rng, SINGLE_PARAM[name], n_inputs, n_weights),
                )
            )
        elif kind == "two_fixed":
            recipe.append(
                (str(rng.choice(TWO_FIXED)), [int(w) for w in rng.choice(n, 2, replace=False)], [])
            )
        elif kind == "two_param":
            name = str(rng.choice(list(TWO_PARAM)))
            wires = [int(w) for w in rng.choice(n, 2, replace=False)]
            recipe.append((name, wires, _params(rng, TWO_PARAM[name], n_inputs, n_weights)))
        elif kind == "multirz":
            k = int(rng.integers(2, n + 1))
            recipe.append(
                (
                    "MultiRZ",
                    [int(w) for w in rng.choice(n, k, replace=False)],
                    _params(rng, 1, n_inputs, n_weights),
                )
            )
        else:
            recipe.append(
                (
                    str(rng.choice(THREE_FIXED)),
                    [int(w) for w in rng.choice(n, 3, replace=False)],
                    [],
                )
            )
    if n >= 2 and rng.random() < 0.5:
        recipe.append(("StronglyEntanglingLayers",))
    if n >= 2 and rng.random() < 0.3:
        recipe.append(("QFT",))
    measurements: list[tuple] = [
        ("z", int(w)) for w in rng.choice(n, int(rng.integers(1, n + 1)), replace=False)
    ]
    if n >= 2:
        i, j = (int(w) for w in rng.choice(n, 2, replace=False))
        measurements.append(("zz", i, j))
        measurements.append(("sum", i, j, float(rng.normal()), float(rng.normal())))
    k = int(rng.integers(1, n + 1))
    measurements.append(("probs", [int(w) for w in rng.choice(n, k, replace=False)]))

    def circuit(inputs, w, layers):
        for step in recipe:
            name = step[0]
            if name == "AngleEmbedding":
                qml.AngleEmbedding(inputs[..., :n], wires=range(min(n, n_inputs)), rotation=step[1])
            elif name == "StronglyEntanglingLayers":
                qml.StronglyEntanglingLayers(layers, wires=range(n))
            elif name == "QFT":
                qml.QFT(wires=range(n))
            else:
                _, wires, params = step
                values = [_value(p, inputs, w) for p in params]
                getattr(qml, name)(*values, wires=wires)
        out = []
        for m in measurements:
            if m[0] == "z":
                out.append(qml.expval(qml.PauliZ(m[1])))
            elif m[0] == "zz":
                out.append(qml.expval(qml.PauliZ(m[1]) @ qml.PauliZ(m[2])))
            elif m[0] == "sum":
                out.append(
                    qml.expval(
                        m[3] * qml.PauliZ(m[1]) + m[4] * (qml.PauliZ(m[1]) @ qml.PauliZ(m[2]))
                    )
                )
            else:
                out.append(qml.probs(wires=m[1]))
        return out

    return circuit


def _params(rng, count, n_inputs, n_weights):
    out = []
    for _ in range(count):
        form = int(rng.integers(4))
        out.append(
            (
                form,
                int(rng.integers(n_inputs)),
                int(rng.integers(n_weights)),
                float(rng.normal()),
                float(rng.normal()),
                float(rng.normal()),
            )
        )
    return out


def _value(param, inputs, w):
    form, i, j, a, c, b = param
    if form == 0:  # a·x_i + c·w_j + b
        return a * inputs[..., i] + c * w[j] + b
    if form == 1:
        return w[j]
    if form == 2:
        return inputs[..., i]
    return b


def _pair(function, n_qubits, shapes, n_inputs=None, seed=0):
    """(engine layer, PennyLane layer) with the same weights, in float64."""
    engine = from_pennylane(
        function, n_qubits, shapes, n_inputs=n_inputs, dtype=torch.complex128, seed=seed
    )
    reference = from_pennylane(
        function,
        n_qubits,
        shapes,
        n_inputs=n_inputs,
        dtype=torch.complex128,
        seed=seed,
        backend="pennylane",
    )
    return engine, reference


def _values_and_grads(layer, x):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    # A random linear functional of every output, so each column's gradient counts.
    probe = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    leaves = [x, *(layer.weights[k] for k, _ in layer.circuit.weight_shapes)]
    grads = torch.autograd.grad((out * probe).sum(), leaves, allow_unused=True)
    # a weight the circuit does not use has no gradient on one path and zeros on the other
    return out.detach(), [
        torch.zeros_like(v) if g is None else g for g, v in zip(grads, leaves, strict=True)
    ]


def _max_errors(a, b, x):
    va, ga = _values_and_grads(a, x)
    vb, gb = _values_and_grads(b, x)
    assert va.shape == vb.shape
    return float((va - vb).abs().max()), max(
        float((p - q).abs().max()) for p, q in zip(ga, gb, strict=True)
    )


CASES = [(seed, n) for seed, n in zip(range(12), [1, 2, 3, 4, 5, 2, 3, 4, 3, 5, 4, 3], strict=True)]


@pytest.mark.parametrize(("seed", "n_qubits"), CASES)
def test_random_circuits_match_pennylane(seed, n_qubits):
    n_inputs = n_qubits + seed % 2
    function = random_circuit(seed, n_qubits, n_inputs, n_weights=4)
    shapes = {"w": (4,), "layers": (2, n_qubits, 3)}
    engine, reference = _pair(function, n_qubits, shapes, n_inputs=n_inputs, seed=seed)
    assert engine.backend == "torch" and reference.backend == "pennylane"
    generator = torch.Generator().manual_seed(seed)
    # A small batch (gate by gate) and one of at least 2^n (the input-free rest as a matrix).
    for batch in (3, 2**n_qubits + 1):
        x = (
            torch.rand(batch, n_inputs, generator=generator, dtype=torch.float64) * 2 - 1
        ) * math.pi
        value_error, grad_error = _max_errors(engine, reference, x)
        assert value_error < TOL and grad_error < TOL, (seed, batch, value_error, grad_error)
    # unbatched inputs give unbatched outputs
    single = engine(x[0])
    assert single.shape == (engine.n_outputs,)
    torch.testing.assert_close(single, engine(x[:1])[0])


def test_every_supported_gate_matches_pennylane():
    from qcalo.quantum.gate_program import supported_gates

    def every_gate(inputs, w):
        x = inputs
        qml.Identity(wires=0)
        for i, name in enumerate(SINGLE_FIXED):
            getattr(qml, name)(wires=i % 3)
        qml.RX(x[..., 0] + w[0], wires=0)
        qml.RY(2 * x[..., 1], wires=1)
        qml.RZ(w[1] - 0.3, wires=2)
        qml.PhaseShift(x[..., 2], wires=0)
        qml.Rot(w[2], x[..., 0], 0.7, wires=1)
        qml.Barrier(wires=[0, 1])
        for i, name in enumerate(TWO_FIXED):
            getattr(qml, name)(wires=[i % 3, (i + 1) % 3])
        for i, (name, count) in enumerate(TWO_PARAM.items()):
            values = [w[(i + k) % 4] + 0.5 * x[..., k % 3] for k in range(count)]
            getattr(qml, name)(*values, wires=[(i + 2) % 3, i % 3])
        qml.MultiRZ(x[..., 1] - w[3], wires=[0, 1, 2])
        qml.GlobalPhase(w[0])
        qml.Snapshot()
        for name in THREE_FIXED:
            getattr(qml, name)(wires=[2, 0, 1])
        qml.Hadamard(wires=2)
        return [qml.expval(qml.PauliZ(i)) for i in range(3)] + [qml.probs(wires=[1, 2])]

    engine, reference = _pair(every_gate, 3, {"w": (4,)})
    assert engine.backend == "torch"
    used = {g.name for g in engine.compiled.program.gates} | {"Barrier", "GlobalPhase", "Snapshot"}
    assert used == set(supported_gates())
    for batch in (2, 9):
        x = (
            torch.rand(
                batch, 3, generator=torch.Generator().manual_seed(batch), dtype=torch.float64
            )
            * 3
        )
        value_error, grad_error = _max_errors(engine, reference, x)
        assert value_error < TOL and grad_error < TOL, (batch, value_error, grad_error)


def test_single_precision_runs_in_complex64_and_matches_to_its_precision():
    function = random_circuit(3, 3, 3, 4)
    shapes = {"w": (4,), "layers": (2, 3, 3)}
    fast = from_pennylane(function, 3, shapes, seed=1)
    reference = from_pennylane(
        function, 3, shapes, seed=1, dtype=torch.complex128, backend="pennylane"
    )
    x = torch.rand(5, 3)
    out = fast(x)
    assert out.dtype == torch.float32
    assert float((out.double() - reference(x.double())).abs().max().detach()) < 1e-5


def test_engine_line_says_where_and_why(capfd):
    def seed_circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(3), rotation="Y")
        qml.BasicEntanglerLayers(weights, wires=range(3))
        return [qml.expval(qml.PauliZ(i)) for i in range(3)]

    from_pennylane(seed_circuit, 3, {"weights": (2, 3)})
    from_pennylane(seed_circuit, 3, {"weights": (2, 3)})  # said once per process
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "seed_circuit runs on qcalo's torch statevector engine" in lines[0]
    assert "operations and 3 measurements are all supported" in lines[0]


class _Opaque(qml.operation.Operation):
    """A gate qcalo's engine does not know, without a decomposition: PennyLane uses its matrix."""

    num_wires = 1
    num_params = 1
    ndim_params = (0,)

    @staticmethod
    def compute_matrix(theta):
        c, s = qml.math.cos(theta / 2), qml.math.sin(theta / 2)
        zero = qml.math.zeros_like(c)
        # RY(θ) followed by a phase: a real rotation written as a matrix only.
        row0 = qml.math.stack([c + 0j * zero, -s + 0j * zero], axis=-1)
        row1 = qml.math.stack([1j * s, 1j * c], axis=-1)
        return qml.math.stack([row0, row1], axis=-2)


def _direct_qnode(function, n_qubits):
    return qml.QNode(
        function,
        qml.device("default.qubit", wires=n_qubits),
        interface="torch",
        diff_method="backprop",
    )


def _check_fallback(layer, function, n_qubits, x, per_row=False):
    """The fallback layer equals the function as a plain QNode (values and gradients)."""
    qnode = _direct_qnode(function, n_qubits)
    names = [k for k, _ in layer.circuit.weight_shapes]
    xa = x.clone().requires_grad_(True)
    out = layer(xa)
    xb = x.clone().requires_grad_(True)
    weights = {k: layer.weights[k].detach().clone().requires_grad_(True) for k in names}
    rows = [xb[i] for i in range(len(xb))] if per_row else [xb]
    parts = []
    for row in rows:
        raw = qnode(row, **weights)
        raw = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        parts.append(
            torch.cat(
                [torch.as_tensor(r).reshape(1 if per_row else len(xb), -1) for r in raw], dim=1
            )
        )
    expected = torch.cat(parts)
    assert float((out - expected).abs().max()) < TOL
    ga = torch.autograd.grad(out.sin().sum(), [xa, *(layer.weights[k] for k in names)])
    gb = torch.autograd.grad(expected.sin().sum(), [xb, *(weights[k] for k in names)])
    assert max(float((p - q).abs().max()) for p, q in zip(ga, gb, strict=True)) < TOL


def test_unsupported_operation_falls_back_to_pennylane_and_says_why(capfd):
    def opaque_circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(2))
        _Opaque(weights[0], wires=1)
        qml.CNOT(wires=[1, 0])
        return [qml.expval(qml.PauliZ(0)), qml.probs(wires=[1])]

    layer = from_pennylane(opaque_circuit, 2, {"weights": (1,)}, dtype=torch.complex128, seed=0)
    assert layer.backend == "pennylane" and layer.n_outputs == 3
    line = capfd.readouterr().err.strip()
    assert "\n" not in line
    assert "opaque_circuit runs on PennyLane (default.qubit" in line
    assert "operation _Opaque is not one qcalo's engine runs" in line
    _check_fallback(layer, opaque_circuit, 2, torch.rand(4, 2, dtype=torch.float64))
    with pytest.raises(ConfigError, match="cannot run on qcalo's torch engine .* _Opaque"):
        from_pennylane(opaque_circuit, 2, {"weights": (1,)}, backend="torch")


def test_nonlinear_parameter_wiring_falls_back(capfd):
    # IQPEmbedding's MultiRZ angles are products x_i·x_j: not an affine map of the inputs.
    def iqp_circuit(inputs, weights):
        qml.IQPEmbedding(inputs, wires=range(3))
        qml.BasicEntanglerLayers(weights, wires=range(3))
        return [qml.expval(qml.PauliZ(i)) for i in range(3)]

    layer = from_pennylane(iqp_circuit, 3, {"weights": (1, 3)}, dtype=torch.complex128, seed=2)
    assert layer.backend == "pennylane"
    line = capfd.readouterr().err.strip()
    assert (
        "a parameter of MultiRZ on wires [0, 1] (from IQPEmbedding) is not an affine function"
        in line
    )
    _check_fallback(layer, iqp_circuit, 3, torch.rand(3, 3, dtype=torch.float64))


def test_unsupported_measurement_and_unbatched_function_fall_back(capfd):
    # inputs[i] indexes an unbatched vector: the QNode path calls the function once per sample.
    def x_readout(inputs, weights):
        qml.RY(inputs[0], wires=0)
        qml.RX(inputs[1] * weights[0], wires=1)
        qml.CNOT(wires=[0, 1])
        return [qml.expval(qml.PauliX(1)), qml.expval(qml.PauliZ(0))]

    layer = from_pennylane(x_readout, 2, {"weights": (1,)}, dtype=torch.complex128, seed=3)
    assert layer.backend == "pennylane" and not layer.compiled.batched
    assert "measurement expval(X(1)) has X or Y terms" in capfd.readouterr().err
    _check_fallback(layer, x_readout, 2, torch.rand(3, 2, dtype=torch.float64), per_row=True)


def test_value_dependent_structure_falls_back():
    def branchy(inputs, weights):
        if float(inputs[0]) > 0:
            qml.RX(weights[0], wires=0)
        else:
            qml.RY(weights[0], wires=0)
        return qml.expval(qml.PauliZ(0))

    circuit = UserCircuit.build(branchy, 1, {"weights": (1,)})
    compiled = circuit.compile()
    # The two traces differ in their operations or in a parameter no autograd path reaches.
    assert compiled.program is None
    assert (
        "change with the values" in compiled.reason or "not an affine function" in compiled.reason
    )


def _write_module(tmp_path, body: str) -> str:
    path = tmp_path / "user_circuits.py"
    path.write_text("import pennylane as qml\n\n" + body, encoding="utf-8")
    return str(path)


SEL_CIRCUIT = """
def circuit(inputs, weights):
    qml.AngleEmbedding(inputs, wires=range(3), rotation="Y")
    qml.StronglyEntanglingLayers(weights, wires=range(3))
    return [qml.expval(qml.PauliZ(i)) for i in range(3)] + [qml.expval(qml.PauliZ(0) @ qml.PauliZ(2))]
"""


@pytest.mark.parametrize("kind", ["quantum", "hybrid", "full_quantum"])
def test_conditioner_from_config_trains_one_step(tmp_path, kind):
    file = _write_module(tmp_path, SEL_CIRCUIT)
    config = FlowConfig.model_validate(
        {
            "n_blocks": 2,
            "coupling": "affine",
            "hidden": [8],
            "conditioner": kind,
            "circuit": {
                "function": f"{file}:circuit",
                "n_qubits": 3,
                "weight_shapes": {"weights": [2, 3, 3]},
            },
        }
    )
    torch.manual_seed(0)
    flow = build_flow(config, 2, 1, seed=1)
    layers = [m for m in flow.modules() if isinstance(m, PennyLaneFunctionLayer)]
    assert len(layers) == 2 and all(layer.backend == "torch" for layer in layers)
    circuit = list(circuit_parameters(flow))
    assert len(circuit) == 2 and all(p.shape == (2, 3, 3) for p in circuit)
    before = [p.detach().clone() for p in circuit]
    if kind == "full_quantum":  # output scales start at zero: open them so the circuit matters
        with torch.no_grad():
            for name, p in flow.named_parameters():
                if name.endswith("output_scale"):
                    p.fill_(0.5)
    x, c = torch.randn(32, 2), torch.rand(32, 1)
    optimiser = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(2):  # the zero-initialised heads open in step 1; the circuit moves in step 2
        optimiser.zero_grad()
        loss = -flow.log_prob(x, c).mean()
        loss.backward()
        optimiser.step()
    assert torch.isfinite(loss)
    assert any(
        float((p.detach() - b).abs().max()) > 0 for p, b in zip(circuit, before, strict=True)
    )


def test_function_circuit_config_round_trips_and_is_refused_by_trig(tmp_path):
    file = _write_module(tmp_path, SEL_CIRCUIT)
    section = {
        "function": f"{file}:circuit",
        "n_qubits": 3,
        "weight_shapes": {"weights": [1, 3, 3]},
    }
    config = ModelConfig.from_dict({"stage1": {"conditioner": "quantum", "circuit": section}})
    again = ModelConfig.from_dict(config.model_dump())
    assert again.stage1.circuit == config.stage1.circuit
    assert (
        ModelConfig.from_dict({"stage1": {"circuit": {"n_qubits": 4}}}).stage1.circuit.n_qubits == 4
    )
    with pytest.raises(ConfigError, match="trig conditioners .* circuit function cannot"):
        ModelConfig.from_dict(
            {"stage1": {"conditioner": "trig", "hidden": [8], "circuit": section}}
        )


def test_bad_function_path_is_one_config_error_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(
            {
                "stage1": {
                    "conditioner": "quantum",
                    "circuit": {"function": "no_such_module_xyz:circuit", "n_qubits": 3},
                }
            }
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "model.stage1.circuit.function: circuit function 'no_such_module_xyz:circuit'"
    )
    assert "importing no_such_module_xyz failed" in message
    file = _write_module(tmp_path, SEL_CIRCUIT)
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        ModelConfig.from_dict(
            {"stage1": {"circuit": {"function": f"{file}:missing", "n_qubits": 3}}}
        )
    with pytest.raises(ConfigError, match="not of the form"):
        ModelConfig.from_dict({"stage1": {"circuit": {"function": "just_a_name", "n_qubits": 3}}})


def test_wrong_weight_shapes_are_one_config_error_line(tmp_path):
    file = _write_module(tmp_path, SEL_CIRCUIT)
    # A name the function does not take: found when the config is read.
    with pytest.raises(ConfigError, match=r"has no argument 'w' named in weight_shapes"):
        ModelConfig.from_dict(
            {
                "stage1": {
                    "circuit": {
                        "function": f"{file}:circuit",
                        "n_qubits": 3,
                        "weight_shapes": {"w": [2]},
                    }
                }
            }
        )
    # A shape the function cannot use: found when the circuit is traced (the model is built).
    config = FlowConfig.model_validate(
        {
            "n_blocks": 1,
            "coupling": "affine",
            "conditioner": "quantum",
            "circuit": {
                "function": f"{file}:circuit",
                "n_qubits": 3,
                "weight_shapes": {"weights": [2, 3]},
            },
        }
    )
    with pytest.raises(ConfigError) as info:
        build_flow(config, 2, 1)
    message = str(info.value)
    assert "\n" not in message
    assert "fails on inputs of shape (3,) and weights of shapes {weights: [2, 3]}" in message
    assert "check n_inputs, n_qubits and weight_shapes" in message
    with pytest.raises(ConfigError, match="weight_shapes.weights: \\[2, 0\\] is not a shape"):
        from_pennylane(lambda inputs, weights: None, 2, {"weights": [2, 0]})
    with pytest.raises(ConfigError, match="uses wire|acts on wire 5"):
        from_pennylane(
            lambda inputs, weights: [qml.RX(weights[0], wires=5), qml.expval(qml.PauliZ(0))][1],
            2,
            {"weights": [1]},
        )
