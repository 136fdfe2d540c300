"""A trained circuit on a device description: readout mitigation, cost accounting, qiskit-aer.

Three parts, the first two without any optional package:

* **Readout-error mitigation of ⟨Z⟩ per wire** (:func:`readout_z`, :func:`mitigate_z`). A
  wire read out with ``e0`` = P(read 1 | state 0) and ``e1`` = P(read 0 | state 1) reports

  .. math:: ⟨Z⟩_\\text{read} = (e_1 - e_0) + (1 - e_0 - e_1)\\,⟨Z⟩,

  so the tensored (per-wire inverse-confusion-matrix) estimate is
  ``(⟨Z⟩_read − (e1 − e0)) / (1 − e0 − e1)``. It is unbiased for independent readout errors
  and multiplies the shot-noise standard deviation by ``1 / (1 − e0 − e1)``
  (:func:`mitigated_z_std`). For single-wire ⟨Z_i⟩ it equals the full tensored inverse (and
  M3, which solves the same tensored model in a reduced subspace) restricted to wire i.
* **Device cost** (:func:`count_circuit_rows`, :func:`shot_seconds`): how many circuit
  executions a model runs per generated shower, and the device time of one shot of a
  transpiled circuit (its scheduled duration, measurement included, plus the repetition delay).
* **qiskit-aer** (optional extra ``device``: ``pip install 'qcalo[device]'``):
  :func:`spec_circuit` writes a :class:`qcalo.quantum.CircuitSpec` with trained weights as a
  qiskit circuit whose inputs stay parameters; :class:`AerCircuit` transpiles it once for a
  backend description (e.g. ``qiskit_ibm_runtime.fake_provider.FakeTorino()``: coupling map,
  native gates, noise-aware layout and routing) and runs batches of inputs on
  ``qiskit_aer.AerSimulator`` with that backend's noise model (gate errors, T1/T2 thermal
  relaxation over the gate durations, readout errors), with or without shots and readout
  mitigation; :func:`on_aer` puts such circuits in place of every
  :class:`qcalo.quantum.QuantumLayer` of a trained model (inference only), as
  :func:`qcalo.quantum.on_pennylane` does for PennyLane devices.

Example::

    >>> round(float(mitigate_z(readout_z(0.3, e0=0.02, e1=0.05), e0=0.02, e1=0.05)), 12)
    0.3
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from qcalo.errors import ConfigError
from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.registry import named_circuits
from qcalo.quantum.spec import CircuitSpec

__all__ = [
    "readout_z",
    "mitigate_z",
    "mitigated_z_std",
    "count_circuit_rows",
    "CircuitRows",
    "shot_seconds",
    "spec_circuit",
    "AerCircuit",
    "AerLayer",
    "on_aer",
    "depolarizing_noise_model",
    "read_out",
    "z_from_probabilities",
    "qiskit_available",
]


# --------------------------------------------------------------------------------------------
# Readout errors and their tensored mitigation (closed form, no optional package)
# --------------------------------------------------------------------------------------------
def _check_rates(e0: Any, e1: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(e0, dtype=np.float64), np.asarray(e1, dtype=np.float64)
    if np.any(a < 0) or np.any(b < 0) or np.any(a + b >= 1):
        raise ConfigError(
            f"readout error rates e0={e0!r}, e1={e1!r} are invalid; expected e0, e1 ≥ 0 and e0 + e1 < 1"
        )
    return a, b


def readout_z(z: Any, e0: Any, e1: Any) -> np.ndarray:
    """⟨Z⟩ as read out: ``(e1 − e0) + (1 − e0 − e1)·z`` (e0 = P(1|0), e1 = P(0|1), per wire)."""
    a, b = _check_rates(e0, e1)
    return (b - a) + (1.0 - a - b) * np.asarray(z, dtype=np.float64)


def mitigate_z(z_read: Any, e0: Any, e1: Any, clip: bool = False) -> np.ndarray:
    """The tensored readout-mitigated ⟨Z⟩: ``(z_read − (e1 − e0)) / (1 − e0 − e1)``.

    Unbiased; with shot noise it may leave [−1, 1] (``clip=True`` clips, at the price of a bias).
    """
    a, b = _check_rates(e0, e1)
    out = (np.asarray(z_read, dtype=np.float64) - (b - a)) / (1.0 - a - b)
    return np.clip(out, -1.0, 1.0) if clip else out


def mitigated_z_std(z: Any, e0: Any, e1: Any, shots: int) -> np.ndarray:
    """Shot-noise standard deviation of :func:`mitigate_z` of a ``shots``-shot estimate of ⟨Z⟩ = z.

    The read-out ±1 outcomes have variance ``1 − z_read²``; the mitigation divides by
    ``1 − e0 − e1``.
    """
    a, b = _check_rates(e0, e1)
    z_read = readout_z(z, a, b)
    return np.sqrt((1.0 - z_read**2) / shots) / (1.0 - a - b)


# --------------------------------------------------------------------------------------------
# Cost accounting
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CircuitRows:
    """Circuit executions counted while running a model: per circuit, rows and distinct rows."""

    rows: dict[str, int]
    distinct_rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def total_distinct(self) -> int:
        return sum(self.distinct_rows.values())


def count_circuit_rows(model: nn.Module, run: Callable[[], Any]) -> CircuitRows:
    """Count the input rows every circuit of ``model`` receives while ``run()`` executes.

    Each row is one circuit execution (one set of input angles, each estimated from ``shots``
    shots on a device). ``distinct_rows`` counts distinct input rows per call: what a device
    would run if identical rows (e.g. a batch conditioned on a few distinct incident energies
    with no other input) were merged.
    """
    rows: dict[str, int] = {}
    distinct: dict[str, int] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = torch.as_tensor(args[0]).detach()
            x = x.reshape(-1, x.shape[-1])
            rows[name] = rows.get(name, 0) + x.shape[0]
            distinct[name] = distinct.get(name, 0) + torch.unique(x, dim=0).shape[0]

        return record

    for name, circuit in named_circuits(model):
        handles.append(circuit.register_forward_pre_hook(hook(name)))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return CircuitRows(rows, distinct)


def shot_seconds(circuit_seconds: float, rep_delay_seconds: float) -> float:
    """Device time of one shot: the scheduled circuit (measurement included) plus the rep delay."""
    if circuit_seconds < 0 or rep_delay_seconds < 0:
        raise ConfigError("shot_seconds: durations must be non-negative")
    return circuit_seconds + rep_delay_seconds


# --------------------------------------------------------------------------------------------
# qiskit / qiskit-aer (optional extra "device")
# --------------------------------------------------------------------------------------------
def qiskit_available() -> bool:
    """Whether qiskit and qiskit-aer import (``pip install 'qcalo[device]'``)."""
    try:
        import qiskit  # noqa: F401
        import qiskit_aer  # noqa: F401
    except ImportError:
        return False
    return True


def _require_qiskit() -> None:
    if not qiskit_available():
        raise ConfigError(
            "qiskit and qiskit-aer are not installed; install the optional extra: pip install 'qcalo[device]'"
        )


def spec_circuit(
    spec: CircuitSpec,
    rotation_weights: Any,
    entangler_weights: Any = None,
    measure: bool = True,
):
    """The qiskit ``QuantumCircuit`` of ``spec`` with the given weights; inputs are parameters.

    Returns (circuit, inputs) where ``inputs`` is the ``ParameterVector`` of the n embedding
    angles (input i on qubit i). The gates are those of
    :func:`qcalo.quantum.pennylane_backend.circuit_function` one by one. Only ⟨Z_i⟩
    measurements without a final QFT are supported (``measure`` adds ``measure q[i] → c[i]``).
    """
    _require_qiskit()
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    if tuple(spec.measurements) != ("z",) or spec.final_qft:
        raise ConfigError(
            "spec_circuit: only circuits measuring ⟨Z_i⟩ ('z') without a final QFT run on a device here"
        )
    n = spec.n_qubits
    rot = np.asarray(torch.as_tensor(rotation_weights).detach().double().cpu())
    ent = (
        None
        if entangler_weights is None
        else np.asarray(torch.as_tensor(entangler_weights).detach().double().cpu())
    )
    x = ParameterVector("x", n)
    qc = QuantumCircuit(n, n if measure else 0)
    embed = {"X": qc.rx, "Y": qc.ry, "Z": qc.rz}[spec.embedding]
    for layer in range(spec.n_layers):
        if layer == 0 or spec.reupload:
            for wire in range(n):
                embed(x[wire], wire)
        for wire in range(n):
            w = rot[layer, wire]
            if spec.rotations == "ryrz":
                qc.ry(float(w[0]), wire)
                qc.rz(float(w[1]), wire)
            else:  # PennyLane's Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ)
                qc.rz(float(w[0]), wire)
                qc.ry(float(w[1]), wire)
                qc.rz(float(w[2]), wire)
        for p, (control, target) in enumerate(spec.entangler_pairs):
            gate = spec.entangler_gate
            if gate == "cnot":
                qc.cx(control, target)
            elif gate == "cz":
                qc.cz(control, target)
            elif gate == "crz":
                assert ent is not None  # as RZ/CX (Aer's density matrix has no CRZ)
                theta = float(ent[layer, p])
                qc.rz(theta / 2, target)
                qc.cx(control, target)
                qc.rz(-theta / 2, target)
                qc.cx(control, target)
            else:  # isingzz: exp(-i θ/2 Z⊗Z)
                assert ent is not None
                qc.rzz(float(ent[layer, p]), control, target)
    if measure:
        qc.measure(range(n), range(n))
    return qc, x


def depolarizing_noise_model(p: float):
    """Aer noise model of :func:`qcalo.quantum.pennylane_backend.circuit_function`'s depolarising.

    PennyLane's ``DepolarizingChannel(p)`` is ρ → (1 − p)ρ + p/3 (XρX + YρY + ZρZ); qiskit's
    ``depolarizing_error(λ, 1)`` is ρ → (1 − λ)ρ + λ I/2, the same channel for λ = 4p/3. It
    follows every one-qubit gate, and each wire of every two-qubit gate (a CRZ entangler is
    written as RZ/CX gates by :func:`spec_circuit`, so its noise differs from PennyLane's there).
    """
    _require_qiskit()
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    one = depolarizing_error(4.0 * p / 3.0, 1)
    model = NoiseModel(basis_gates=["rx", "ry", "rz", "cx", "cz", "crz", "rzz"])
    model.add_all_qubit_quantum_error(one, ["rx", "ry", "rz"])
    model.add_all_qubit_quantum_error(one.tensor(one), ["cx", "cz", "crz", "rzz"])
    return model


def _compact_noise(noise_model: Any, mapping: Mapping[int, int]) -> Any:
    """The gate errors of ``noise_model`` on the qubits of ``mapping``, renumbered by it."""
    from qiskit_aer.noise import NoiseModel

    small = NoiseModel(basis_gates=noise_model.basis_gates)
    for gate, errors in noise_model._local_quantum_errors.items():
        if gate == "measure":
            continue  # applied explicitly before the final probabilities (see AerCircuit)
        for qubits, error in errors.items():
            if all(q in mapping for q in qubits):
                small.add_quantum_error(error, gate, [mapping[q] for q in qubits])
    for gate, error in noise_model._default_quantum_errors.items():
        small.add_all_qubit_quantum_error(error, gate)
    return small


def _readout_rates(noise_model: Any, qubits: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(e0, e1) = (P(read 1 | 0), P(read 0 | 1)) per physical qubit from a noise model (0 if none)."""
    e0 = np.zeros(len(qubits))
    e1 = np.zeros(len(qubits))
    if noise_model is None:
        return e0, e1
    local = noise_model._local_readout_errors
    default = noise_model._default_readout_error
    for k, q in enumerate(qubits):
        error = local.get((q,), default)
        if error is not None:
            probs = np.asarray(error.probabilities, dtype=np.float64)
            e0[k], e1[k] = probs[0, 1], probs[1, 0]
    return e0, e1


def read_out(probabilities: np.ndarray, e0: np.ndarray, e1: np.ndarray) -> np.ndarray:
    """Basis-state probabilities (B, 2^n) after independent per-wire readout errors.

    Index bit i (qiskit order: wire 0 is the least significant bit) is wire i's outcome; wire i
    flips 0→1 with probability ``e0[i]`` and 1→0 with ``e1[i]``.
    """
    batch = probabilities.shape[0]
    n = len(e0)
    p = probabilities.reshape((batch,) + (2,) * n)  # axis 1 is wire n-1, axis n is wire 0
    for i in range(n):
        axis = n - i
        confusion = np.array([[1 - e0[i], e1[i]], [e0[i], 1 - e1[i]]])  # [read, state]
        p = np.moveaxis(np.tensordot(confusion, p, axes=([1], [axis])), 0, axis)
    return p.reshape(batch, -1)


def z_from_probabilities(probabilities: np.ndarray, n: int) -> np.ndarray:
    """⟨Z_i⟩ (B, n) from basis-state probabilities (B, 2^n), wire 0 the least significant bit."""
    index = np.arange(probabilities.shape[-1])
    signs = np.stack([1.0 - 2.0 * ((index >> i) & 1) for i in range(n)], axis=1)
    return probabilities @ signs


class AerCircuit:
    """A trained circuit on qiskit-aer: transpiled once, then batches of inputs → ⟨Z_i⟩ (B, n).

    ``backend``: a qiskit backend description (e.g. a fake backend of ``qiskit-ibm-runtime``).
    The circuit is transpiled to its target once (``optimization_level``, ``initial_layout``:
    the physical qubit of each wire, or None for the transpiler's noise-aware choice,
    ``seed_transpiler``; ALAP scheduling, so that idle qubits relax too), the noise model's
    passes insert the thermal relaxation of every delay, and the circuit is cut down to the
    qubits it uses (routing ancillas included) with their gate errors, so that Aer simulates a
    small density matrix. ``noise_model`` defaults to ``NoiseModel.from_backend(backend)``
    (gate depolarising and T1/T2 relaxation over each gate's duration, readout errors). Without
    a backend the logical circuit runs as written with ``noise_model`` (e.g.
    :func:`depolarizing_noise_model`) or none.

    Each batch row's noisy output distribution is computed exactly (Aer ``density_matrix``,
    ``save_probabilities``, the measurement's own relaxation error applied first), then read out
    through the per-wire readout errors (:func:`read_out`); ``shots=None`` returns its exact
    ⟨Z_i⟩, otherwise ``shots`` outcomes are drawn from it (multinomial, ``seed``): the same
    distribution as sampling shots in Aer with the readout errors, at a cost independent of the
    shots. ``mitigate`` applies :func:`mitigate_z` with the wires' published readout rates.
    """

    def __init__(
        self,
        spec: CircuitSpec,
        rotation_weights: Any,
        entangler_weights: Any = None,
        *,
        backend: Any = None,
        noise_model: Any = None,
        shots: int | None = None,
        mitigate: bool = False,
        optimization_level: int = 3,
        initial_layout: Sequence[int] | None = None,
        seed_transpiler: int = 0,
        seed: int | None = None,
    ) -> None:
        _require_qiskit()
        from qiskit import QuantumCircuit, transpile
        from qiskit_aer import AerSimulator
        from qiskit_aer.noise import NoiseModel

        if shots is not None and (not isinstance(shots, int) or shots < 1):
            raise ConfigError(f"AerCircuit: shots={shots!r} is invalid; expected None or ≥ 1")
        self.spec = spec
        self.shots = shots
        self.mitigate = mitigate
        n = spec.n_qubits
        logical, self.inputs = spec_circuit(spec, rotation_weights, entangler_weights)
        measure_errors: dict[int, Any] = {}
        if backend is not None:
            if noise_model is None:
                noise_model = NoiseModel.from_backend(backend)
            routed = transpile(
                logical,
                backend=backend,
                optimization_level=optimization_level,
                initial_layout=list(initial_layout) if initial_layout is not None else None,
                seed_transpiler=seed_transpiler,
                scheduling_method="alap",
            )
            self.transpiled = routed
            for noise_pass in getattr(noise_model, "_custom_noise_passes", []):
                routed = noise_pass(routed)
            quiet = {"delay", "quantum_channel", "barrier"}
            active = sorted(
                {
                    routed.find_bit(q).index
                    for instruction in routed.data
                    if instruction.operation.name not in quiet
                    for q in instruction.qubits
                }
            )
            mapping = {q: k for k, q in enumerate(active)}
            self.physical = [routed.find_bit(_measured_qubit(routed, i)).index for i in range(n)]
            circuit = QuantumCircuit(len(active))
            for instruction in routed.data:
                qubits = [routed.find_bit(q).index for q in instruction.qubits]
                if instruction.operation.name in ("measure", "barrier") or any(
                    q not in mapping for q in qubits
                ):
                    continue
                circuit.append(instruction.operation, [mapping[q] for q in qubits])
            self.active = active
            wires = [mapping[q] for q in self.physical]
            measure_errors = {
                mapping[q[0]]: e
                for q, e in noise_model._local_quantum_errors.get("measure", {}).items()
                if q[0] in mapping and q[0] in self.physical
            }
            simulated_noise = _compact_noise(noise_model, mapping)
        else:
            self.transpiled = logical
            circuit = logical.remove_final_measurements(inplace=False)
            self.physical = list(range(n))
            self.active = list(range(n))
            wires = list(range(n))
            simulated_noise = noise_model
        for qubit, error in measure_errors.items():
            circuit.append(error.to_instruction(), [qubit])
        circuit.save_probabilities(qubits=wires)
        self.circuit = circuit
        self.noise_model = noise_model
        self.e0, self.e1 = _readout_rates(noise_model, self.physical)
        self.simulator = AerSimulator(method="density_matrix", noise_model=simulated_noise)
        self._rng = np.random.default_rng(seed)
        self._parameters = {p.name: p for p in circuit.parameters}

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Exact noisy basis-state probabilities (B, 2^n) of the wires before readout."""
        x = np.asarray(inputs, dtype=np.float64).reshape(-1, self.spec.n_qubits)
        binds = {
            self._parameters[p.name]: x[:, i].tolist()
            for i, p in enumerate(self.inputs)
            if p.name in self._parameters
        }
        if binds:
            result = self.simulator.run(self.circuit, parameter_binds=[binds], shots=1).result()
        else:
            result = self.simulator.run([self.circuit] * len(x), shots=1).result()
        return np.stack(
            [np.asarray(result.data(b)["probabilities"], dtype=np.float64) for b in range(len(x))]
        )

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """⟨Z_i⟩ (B, n) for input angles (B, n), float64 (see the class doc)."""
        n = self.spec.n_qubits
        x = np.asarray(inputs, dtype=np.float64).reshape(-1, n)
        if len(x) == 0:
            return np.zeros((0, n))
        read = read_out(self.probabilities(x), self.e0, self.e1)
        if self.shots is not None:
            read = np.clip(read, 0.0, None)
            read /= read.sum(axis=1, keepdims=True)
            read = np.stack([self._rng.multinomial(self.shots, p) for p in read]) / self.shots
        z = z_from_probabilities(read, n)
        return mitigate_z(z, self.e0, self.e1) if self.mitigate else z

    def schedule_seconds(self, backend: Any) -> float:
        """Scheduled duration (s) of the transpiled circuit on ``backend``, measurement included."""
        return float(self.transpiled.estimate_duration(backend.target, unit="s"))


def _measured_qubit(circuit: Any, clbit_index: int) -> Any:
    """The qubit measured into clbit ``clbit_index`` (the last such measurement)."""
    qubit = None
    for instruction in circuit.data:
        if (
            instruction.operation.name == "measure"
            and circuit.find_bit(instruction.clbits[0]).index == clbit_index
        ):
            qubit = instruction.qubits[0]
    if qubit is None:
        raise ConfigError(f"transpiled circuit measures nothing into clbit {clbit_index}")
    return qubit


class AerLayer(nn.Module):
    """A :class:`QuantumLayer`'s stand-in running an :class:`AerCircuit` (inference only)."""

    def __init__(self, layer: QuantumLayer, **options: Any) -> None:
        super().__init__()
        self.spec = layer.spec
        self.n_outputs = layer.n_outputs
        self.aer = AerCircuit(
            layer.spec, layer.rotation_weights, layer.entangler_weights, **options
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(inputs)
        unbatched = x.dim() == 1
        rows = x.detach().reshape(-1, self.spec.n_qubits).double().cpu().numpy()
        out = torch.as_tensor(self.aer.run(rows), dtype=torch.float64)
        out = out.to(x.dtype if x.is_floating_point() else torch.float64)
        return out[0] if unbatched else out


def on_aer(module: nn.Module, seed: int | None = None, **options: Any) -> nn.Module:
    """A deep copy of ``module`` whose every :class:`QuantumLayer` runs on an :class:`AerCircuit`.

    ``options`` go to :class:`AerCircuit` (``backend``, ``noise_model``, ``shots``,
    ``mitigate``, ``optimization_level``, ``initial_layout``, ``seed_transpiler``); circuit
    ``i`` gets simulator seed ``seed + i``. Inference only (no gradients).
    """
    _require_qiskit()
    clone = copy.deepcopy(module)
    circuits = named_circuits(clone)
    others = [
        name or "(the module itself)" for name, c in circuits if not isinstance(c, QuantumLayer)
    ]
    if others:
        raise ConfigError(f"on_aer: {', '.join(others)} are not QuantumLayers")
    for index, (name, layer) in enumerate(circuits):
        assert isinstance(layer, QuantumLayer)
        replacement = AerLayer(layer, seed=None if seed is None else seed + index, **options)
        if not name:
            return replacement
        parent_name, _, child = name.rpartition(".")
        setattr(clone.get_submodule(parent_name) if parent_name else clone, child, replacement)
    return clone
