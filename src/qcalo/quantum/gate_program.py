"""A circuit given as a list of gates, compiled into qcalo's batched statevector layers.

:class:`qcalo.quantum.CircuitSpec` describes layered circuits; a user's own circuit (a
PennyLane function, :mod:`qcalo.quantum.pennylane_import`) is an arbitrary gate list. This
module runs such a list the way the torch backend runs a spec (:mod:`qcalo.quantum.statevector`):
gates are not applied one by one where they can be fused.

* Single-qubit gates are held back per wire and multiplied into one 2×2 matrix per wire; the
  wires' matrices are applied together as one product layer (a few dense blocks of ≤ 4 wires,
  :func:`sv.apply_product_layer`) when a multi-qubit gate needs one of those wires. Gates on
  other wires commute with that multi-qubit gate and stay held back. A product layer acting on
  |0…0⟩ is the product state of its first columns, built in closed form.
* Permutation gates (CNOT, SWAP, Toffoli, CSWAP) in a row are one index gather.
* Diagonal multi-qubit gates (CZ, CCZ, CRZ, ControlledPhaseShift, IsingZZ, MultiRZ) in a row are
  one elementwise phase, exp(i·(c + θ @ C)), whose angle is linear in the gates' parameters.
* Other two-qubit gates (CY, CRX, CRY, CRot, IsingXX, IsingYY) are dense 4×4 matrices.
* The readout is |ψ|² times one fixed matrix R (D, n_outputs): ⟨O⟩ of an observable diagonal
  in the computational basis (sums of products of PauliZ and Identity, real coefficients) is
  a column of its eigenvalues, ``probs(wires)`` a block of 0/1 columns (the marginal
  distribution, the first listed wire most significant). Trailing permutations are folded
  into R's rows and trailing diagonals dropped: neither changes what is measured.
* Without inputs after the first layer, the input-independent rest of the circuit is built
  once per call as a 2^n×2^n matrix M (the rest run on the identity) and the batch's states
  multiply it in one GEMM, when the batch is at least 2^n.

Gate parameters are an affine function of the inputs x (B, n_inputs) and the flattened weights
w (n_weights,): θ = x @ A_xᵀ + A_w @ w + b (:class:`ParameterMap`). Everything is recorded by
torch's autograd, so gradients with respect to inputs and weights (and higher derivatives) come
for free. Wire 0 is the most significant bit of a basis-state index, as in PennyLane.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qcalo.quantum import statevector as sv

__all__ = [
    "Gate",
    "Measurement",
    "ParameterMap",
    "GateProgram",
    "SINGLE_QUBIT_GATES",
    "PERMUTATION_GATES",
    "DIAGONAL_GATES",
    "DENSE_TWO_QUBIT_GATES",
    "NO_OP_GATES",
    "supported_gates",
]


# ----------------------------------------------------------------------------------------------
# Gate matrices. Parameters are tensors of shape () (shared by the batch) or (B,) (per sample).


def _const(matrix: Sequence[Sequence[complex]]) -> Callable[..., torch.Tensor]:
    values = np.asarray(matrix, dtype=np.complex128)

    def build(*, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.as_tensor(values, dtype=dtype, device=device)

    return build


def _phase_shift(phi: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(phi), torch.zeros_like(phi)
    real = torch.stack([torch.stack([one, zero], -1), torch.stack([zero, torch.cos(phi)], -1)], -2)
    imag = torch.stack([torch.stack([zero, zero], -1), torch.stack([zero, torch.sin(phi)], -1)], -2)
    return torch.complex(real, imag)


def _rot(phi: torch.Tensor, theta: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ)."""
    return sv.rz(omega) @ sv.ry(theta) @ sv.rz(phi)


_SQRT_HALF = 1 / math.sqrt(2)
#: Fixed single-qubit gates: name -> 2×2 matrix.
_FIXED_SINGLE = {
    "Identity": [[1, 0], [0, 1]],
    "Hadamard": [[_SQRT_HALF, _SQRT_HALF], [_SQRT_HALF, -_SQRT_HALF]],
    "PauliX": [[0, 1], [1, 0]],
    "PauliY": [[0, -1j], [1j, 0]],
    "PauliZ": [[1, 0], [0, -1]],
    "S": [[1, 0], [0, 1j]],
    "T": [[1, 0], [0, np.exp(1j * np.pi / 4)]],
    "SX": [[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]],
}
#: Parametrised single-qubit gates: name -> (number of parameters, matrix of the parameters).
_PARAM_SINGLE: dict[str, tuple[int, Callable[..., torch.Tensor]]] = {
    "RX": (1, sv.rx),
    "RY": (1, sv.ry),
    "RZ": (1, sv.rz),
    "PhaseShift": (1, _phase_shift),
    "Rot": (3, _rot),
}
SINGLE_QUBIT_GATES = frozenset(_FIXED_SINGLE) | frozenset(_PARAM_SINGLE)


def _controlled(u: torch.Tensor) -> torch.Tensor:
    """diag(I, U) (..., 4, 4) on (control, target) from U (..., 2, 2)."""
    top = torch.zeros(*u.shape[:-2], 2, 4, dtype=u.dtype, device=u.device)
    top[..., 0, 0] = 1
    top[..., 1, 1] = 1
    bottom = torch.cat([torch.zeros_like(u), u], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _ising(pauli: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """exp(-iφ P⊗P/2) = cos(φ/2)·I - i·sin(φ/2)·P⊗P."""
    pp = np.kron(pauli, pauli)

    def build(phi: torch.Tensor) -> torch.Tensor:
        dtype = torch.complex128 if phi.dtype == torch.float64 else torch.complex64
        eye = torch.eye(4, dtype=dtype, device=phi.device)
        mat = torch.as_tensor(pp, dtype=dtype, device=phi.device)
        c = torch.cos(phi / 2).to(dtype)[..., None, None]
        s = torch.sin(phi / 2).to(dtype)[..., None, None]
        return c * eye - 1j * s * mat

    return build


_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
#: Dense two-qubit gates: name -> (number of parameters, 4×4 matrix of the parameters or None
#: for a fixed gate, whose matrix is in _FIXED_DENSE), on (wire a, wire b), a more significant.
_DENSE: dict[str, tuple[int, Callable[..., torch.Tensor] | None]] = {
    "CY": (0, None),
    "CRX": (1, lambda t: _controlled(sv.rx(t))),
    "CRY": (1, lambda t: _controlled(sv.ry(t))),
    "CRot": (3, lambda a, b, c: _controlled(_rot(a, b, c))),
    "IsingXX": (1, _ising(_X)),
    "IsingYY": (1, _ising(_Y)),
}
_FIXED_DENSE = {"CY": np.block([[np.eye(2), np.zeros((2, 2))], [np.zeros((2, 2)), _Y]])}
DENSE_TWO_QUBIT_GATES = frozenset(_DENSE)
#: Gates that permute basis states.
PERMUTATION_GATES = frozenset({"CNOT", "SWAP", "Toffoli", "CSWAP"})
#: Multi-qubit gates diagonal in the computational basis: name -> number of parameters.
DIAGONAL_GATES = {
    "CZ": 0,
    "CCZ": 0,
    "CRZ": 1,
    "ControlledPhaseShift": 1,
    "IsingZZ": 1,
    "MultiRZ": 1,
}
#: Operations that do not change measured probabilities (a global phase) or do nothing.
NO_OP_GATES = frozenset({"GlobalPhase", "Barrier", "Snapshot"})


def supported_gates() -> frozenset[str]:
    """Names of every PennyLane operation the gate program runs natively."""
    return (
        SINGLE_QUBIT_GATES
        | PERMUTATION_GATES
        | frozenset(DIAGONAL_GATES)
        | DENSE_TWO_QUBIT_GATES
        | NO_OP_GATES
    )


def n_parameters(name: str) -> int:
    """Number of parameters of the supported gate ``name``."""
    if name in _PARAM_SINGLE:
        return _PARAM_SINGLE[name][0]
    if name in _DENSE:
        return _DENSE[name][0]
    if name in DIAGONAL_GATES:
        return DIAGONAL_GATES[name]
    return 0


# ----------------------------------------------------------------------------------------------
# The program


@dataclass(frozen=True)
class Gate:
    """One operation: a supported gate ``name`` on ``wires`` with parameters θ[params] (indices
    into the circuit's parameter vector, see :class:`ParameterMap`)."""

    name: str
    wires: tuple[int, ...]
    params: tuple[int, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """One measured quantity: ``kind="expval"`` of the diagonal observable Σ_t c_t Π_{w∈t} Z_w
    (``terms``: (coefficient, wires) pairs, Identity as an empty tuple), or ``kind="probs"`` of
    ``wires`` (2^len(wires) outputs, the first wire most significant)."""

    kind: str
    wires: tuple[int, ...] = ()
    terms: tuple[tuple[float, tuple[int, ...]], ...] = ()

    @property
    def size(self) -> int:
        return 1 if self.kind == "expval" else 2 ** len(self.wires)


@dataclass
class ParameterMap:
    """θ = x @ A_xᵀ + A_w @ w + b: the gates' parameters from inputs and flattened weights.

    ``inputs`` A_x (n_params, n_inputs), ``weights`` A_w (n_params, n_weights), ``offset`` b
    (n_params,), float64 NumPy arrays.
    """

    inputs: np.ndarray
    weights: np.ndarray
    offset: np.ndarray

    @property
    def input_dependent(self) -> np.ndarray:
        """Boolean (n_params,): which parameters depend on the inputs."""
        return np.any(self.inputs != 0, axis=1)


@dataclass
class _ProductLayer:
    gates: dict[int, list[Gate]]  # wire -> its gates, in order


@dataclass
class _Permutation:
    index: np.ndarray  # new[k] = old[index[k]]


@dataclass
class _Diagonal:
    constant: np.ndarray  # (D,) complex: the fixed gates' diagonal
    params: list[int] = field(default_factory=list)
    coefficients: list[np.ndarray] = field(default_factory=list)  # each (D,): phase += θ·c


@dataclass
class _Dense:
    gate: Gate


_Segment = _ProductLayer | _Permutation | _Diagonal | _Dense


def _bits(n: int) -> np.ndarray:
    return sv.basis_bits(n)


def _permutation_index(gate: Gate, n: int) -> np.ndarray:
    """new[k] = old[index[k]] for the permutation gate."""
    k = np.arange(2**n)

    def bit(w: int) -> np.ndarray:
        return (k >> (n - 1 - w)) & 1

    def flip(w: int, condition: np.ndarray) -> np.ndarray:
        return k ^ (condition << (n - 1 - w))

    w = gate.wires
    if gate.name == "CNOT":
        return flip(w[1], bit(w[0]))
    if gate.name == "Toffoli":
        return flip(w[2], bit(w[0]) & bit(w[1]))
    if gate.name in ("SWAP", "CSWAP"):
        a, b = (w[0], w[1]) if gate.name == "SWAP" else (w[1], w[2])
        swap = bit(a) ^ bit(b)
        if gate.name == "CSWAP":
            swap = swap & bit(w[0])
        return k ^ (swap << (n - 1 - a)) ^ (swap << (n - 1 - b))
    raise ValueError(f"{gate.name} is not a permutation gate")


def _diagonal_parts(gate: Gate, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(constant phase angles (D,), coefficients c (D,) with phase += θ·c, or None)."""
    bits = _bits(n)
    z = 1 - 2 * bits
    w = gate.wires
    zero = np.zeros(2**n)
    if gate.name == "CZ":
        return np.pi * bits[:, w[0]] * bits[:, w[1]], None
    if gate.name == "CCZ":
        return np.pi * bits[:, w[0]] * bits[:, w[1]] * bits[:, w[2]], None
    if gate.name == "CRZ":
        return zero, -0.5 * bits[:, w[0]] * z[:, w[1]]
    if gate.name == "ControlledPhaseShift":
        return zero, (bits[:, w[0]] * bits[:, w[1]]).astype(np.float64)
    if gate.name in ("IsingZZ", "MultiRZ"):
        return zero, -0.5 * np.prod(z[:, list(w)], axis=1)
    raise ValueError(f"{gate.name} is not a diagonal gate")


def readout_matrix(measurements: Sequence[Measurement], n: int) -> np.ndarray:
    """R (2^n, n_outputs): features = |ψ|² @ R."""
    bits = _bits(n)
    z = 1 - 2 * bits
    columns: list[np.ndarray] = []
    for m in measurements:
        if m.kind == "expval":
            column = np.zeros(2**n)
            for coefficient, wires in m.terms:
                column += coefficient * (np.prod(z[:, list(wires)], axis=1) if wires else 1.0)
            columns.append(column[:, None])
        else:
            k = len(m.wires)
            outcome = (
                bits[:, list(m.wires)] @ (2 ** np.arange(k - 1, -1, -1))
                if k
                else np.zeros(2**n, dtype=np.int64)
            )
            block = np.zeros((2**n, 2**k))
            block[np.arange(2**n), outcome] = 1.0
            columns.append(block)
    return np.concatenate(columns, axis=1)


class GateProgram:
    """A gate list compiled into fused statevector steps; call :meth:`features`.

    ``gates``: the circuit's operations in order (every name in :func:`supported_gates`);
    ``measurements``: what is returned, concatenated in order; ``parameters``: how the gates'
    parameters follow from inputs and weights.
    """

    def __init__(
        self,
        n_qubits: int,
        gates: Sequence[Gate],
        measurements: Sequence[Measurement],
        parameters: ParameterMap,
    ) -> None:
        unknown = sorted({g.name for g in gates} - supported_gates())
        if unknown:
            raise ValueError(f"gates not supported by the gate program: {', '.join(unknown)}")
        self.n_qubits = n = n_qubits
        self.gates = list(gates)
        self.measurements = list(measurements)
        self.parameters = parameters
        self.n_outputs = sum(m.size for m in self.measurements)
        self._blocks = sv.wire_blocks(n)
        segments = self._compile(self.gates)
        readout = readout_matrix(self.measurements, n)
        # Trailing diagonals do not change |ψ|²; a trailing permutation moves R's rows.
        while segments and isinstance(segments[-1], (_Diagonal, _Permutation)):
            last = segments.pop()
            if isinstance(last, _Permutation):
                readout = readout[np.argsort(last.index)]
        self.segments = segments
        self.readout = readout
        self._dependent = parameters.input_dependent
        self._dependent_index = np.flatnonzero(self._dependent)
        self._column = np.full(len(self._dependent), -1)
        self._column[self._dependent_index] = np.arange(len(self._dependent_index))
        # The first segment that uses an input; the segments after the last one form the
        # input-independent rest (a matrix when worth it).
        uses_input = [self._segment_uses_input(s) for s in segments]
        self._last_input_segment = max((i for i, u in enumerate(uses_input) if u), default=-1)
        self._slots = {i: _slots(s) for i, s in enumerate(segments) if isinstance(s, _ProductLayer)}
        self._cache: dict[tuple[torch.device, torch.dtype], dict[Any, torch.Tensor]] = {}

    # Compilation -------------------------------------------------------------------------------
    def _compile(self, gates: Sequence[Gate]) -> list[_Segment]:
        n = self.n_qubits
        segments: list[_Segment] = []
        pending: dict[int, list[Gate]] = {}

        def flush() -> None:
            if pending:
                segments.append(_ProductLayer(dict(pending)))
                pending.clear()

        def append(segment: _Segment) -> None:
            last = segments[-1] if segments else None
            if isinstance(segment, _Permutation) and isinstance(last, _Permutation):
                last.index = last.index[segment.index]
            elif isinstance(segment, _Diagonal) and isinstance(last, _Diagonal):
                last.constant = last.constant * segment.constant
                last.params += segment.params
                last.coefficients += segment.coefficients
            else:
                segments.append(segment)

        for gate in gates:
            if gate.name in NO_OP_GATES:
                continue
            if gate.name in SINGLE_QUBIT_GATES:
                pending.setdefault(gate.wires[0], []).append(gate)
                continue
            if any(w in pending for w in gate.wires):
                flush()
            if gate.name in PERMUTATION_GATES:
                append(_Permutation(_permutation_index(gate, n)))
            elif gate.name in DIAGONAL_GATES:
                constant, coefficients = _diagonal_parts(gate, n)
                diagonal = _Diagonal(np.exp(1j * constant))
                if coefficients is not None:
                    diagonal.params.append(gate.params[0])
                    diagonal.coefficients.append(coefficients)
                append(diagonal)
            else:
                append(_Dense(gate))
        flush()
        return segments

    def _segment_uses_input(self, segment: _Segment) -> bool:
        if isinstance(segment, _ProductLayer):
            params = [p for gs in segment.gates.values() for g in gs for p in g.params]
        elif isinstance(segment, _Diagonal):
            params = segment.params
        elif isinstance(segment, _Dense):
            params = list(segment.gate.params)
        else:
            params = []
        return bool(params) and bool(self._dependent[params].any())

    def _constants(self, device: torch.device, real: torch.dtype) -> dict[Any, torch.Tensor]:
        key = (device, real)
        if key not in self._cache:
            p = self.parameters
            complex_dtype = torch.complex128 if real == torch.float64 else torch.complex64
            self._cache[key] = {
                "a_inputs": torch.as_tensor(
                    p.inputs[self._dependent_index], dtype=real, device=device
                ),
                "a_weights": torch.as_tensor(p.weights, dtype=real, device=device),
                "offset": torch.as_tensor(p.offset, dtype=real, device=device),
                "readout": torch.as_tensor(self.readout, dtype=real, device=device),
                "complex_probe": torch.zeros((), dtype=complex_dtype, device=device),
                "dependent": torch.as_tensor(self._dependent_index, device=device),
                "dependent_mask": torch.as_tensor(self._dependent),
            }
        return self._cache[key]

    # Execution ---------------------------------------------------------------------------------
    def features(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Measured features (B, n_outputs) for inputs (B, n_inputs) and flat weights (n_weights,).

        The circuit runs in complex128 when ``weights`` is float64, else complex64; the result
        has the weights' dtype.
        """
        probs = self.probabilities(inputs, weights)
        const = self._constants(weights.device, weights.dtype)
        return probs @ const["readout"]

    def probabilities(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """|ψ|² (B, 2^n) before the folded trailing permutation (see :attr:`readout`)."""
        state = self.state(inputs, weights)
        return state.real.square() + state.imag.square()

    def state(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The statevector (B, 2^n) after the compiled segments (trailing permutations and
        diagonals already dropped: compare only |ψ|² through :attr:`readout`)."""
        real = weights.dtype
        const = self._constants(weights.device, real)
        cdtype = const["complex_probe"].dtype
        inputs = inputs.to(real)
        batch = inputs.shape[0]
        shared = const["a_weights"] @ weights + const["offset"]  # (n_params,)
        per_sample = None
        if len(self._dependent_index):
            # (B, n_params): every parameter per sample, for the groups an input enters.
            per_sample = shared.unsqueeze(0).repeat(batch, 1)
            per_sample[:, const["dependent"]] += inputs @ const["a_inputs"].mT
        params = _Parameters(shared, per_sample, const, cdtype)
        dim = 2**self.n_qubits
        segments = self.segments
        state: torch.Tensor | None = None
        start = 0
        if segments and isinstance(segments[0], _ProductLayer):
            gates = self._layer_gates(0, segments[0], params)
            first = gates[..., :, 0]
            if first.dim() == 2:
                first = first.expand(batch, -1, -1)
            state = sv.product_state(first)
            start = 1
        if state is None:
            state = torch.zeros(batch, dim, dtype=cdtype, device=weights.device)
            state[:, 0] = 1
        split = max(start, self._last_input_segment + 1)
        if split < len(segments) and batch >= dim:
            # The input-independent rest as one matrix: its rows are the rest applied to |k⟩.
            state = self._run(state, start, split, params)
            identity = torch.eye(dim, dtype=cdtype, device=weights.device)
            return state @ self._run(identity, split, len(segments), params)
        return self._run(state, start, len(segments), params)

    def _run(self, state: torch.Tensor, start: int, stop: int, params: _Parameters) -> torch.Tensor:
        n = self.n_qubits
        for position in range(start, stop):
            segment = self.segments[position]
            if isinstance(segment, _ProductLayer):
                gates = self._layer_gates(position, segment, params)
                state = sv.apply_product_layer(state, gates, self._blocks)
            elif isinstance(segment, _Permutation):
                index = params.tensor(("perm", position), segment.index)
                state = state.index_select(1, index)
            elif isinstance(segment, _Diagonal):
                diagonal = params.tensor(("diag", position), segment.constant, params.cdtype)
                if segment.params:
                    angles = params.take(segment.params)  # (k,) | (B, k)
                    coefficients = params.tensor(
                        ("coeff", position), np.stack(segment.coefficients), params.real
                    )
                    phase = angles @ coefficients  # (D,) | (B, D)
                    diagonal = diagonal * torch.polar(torch.ones_like(phase), phase)
                state = state * diagonal
            else:
                gate = segment.gate
                _, build = _DENSE[gate.name]
                if build is None:
                    matrix = params.tensor(
                        ("dense", position), _FIXED_DENSE[gate.name], params.cdtype
                    )
                else:
                    values = params.take(gate.params)
                    matrix = build(*values.unbind(-1)).to(params.cdtype)
                state = _apply_two_qubit(state, matrix, gate.wires[0], gate.wires[1], n)
        return state

    def _layer_gates(
        self, position: int, layer: _ProductLayer, params: _Parameters
    ) -> torch.Tensor:
        """(n, 2, 2) shared, or (B, n, 2, 2) when an input enters: each wire's gates multiplied.

        The layer's gates are grouped by their place on their wire and their name, so each
        group's matrices are built in one call: slot j holds the j-th gate of every wire
        (identity where a wire has fewer), and the layer is S_last ⋯ S_1 S_0 per wire.
        """
        n = self.n_qubits
        product: torch.Tensor | None = None
        for slot, groups in enumerate(self._slots[position]):
            matrices = params.tensor(("eye", n), np.tile(np.eye(2), (n, 1, 1)), params.cdtype)
            for name, wires, indices in groups:
                key = ("wires", position, slot, name)
                wire_index = params.tensor(key, np.asarray(wires))
                if name in _FIXED_SINGLE:
                    block = params.tensor(
                        ("fixed", name), np.asarray(_FIXED_SINGLE[name]), params.cdtype
                    )
                    block = block.expand(len(wires), 2, 2)
                else:
                    values = params.take(indices)  # (k, p) | (B, k, p)
                    block = _PARAM_SINGLE[name][1](*values.unbind(-1)).to(params.cdtype)
                if block.dim() == 4 and matrices.dim() == 3:
                    matrices = matrices.expand(block.shape[0], -1, -1, -1)
                elif block.dim() == 3 and matrices.dim() == 4:
                    block = block.expand(matrices.shape[0], -1, -1, -1)
                matrices = matrices.index_copy(-3, wire_index, block)
            product = matrices if product is None else matrices @ product
        assert product is not None
        return product


class _Parameters:
    """The gates' parameters of one call: shared (n_params,) and, when inputs enter, per
    sample (B, n_params); and cached constant tensors for the call's device and dtype."""

    def __init__(
        self,
        shared: torch.Tensor,
        per_sample: torch.Tensor | None,
        cache: dict[Any, torch.Tensor],
        cdtype: torch.dtype,
    ) -> None:
        self.shared, self.per_sample, self.cache, self.cdtype = shared, per_sample, cache, cdtype
        self.real = shared.dtype
        self.dependent: np.ndarray = cache["dependent_mask"].cpu().numpy()

    def tensor(self, key: Any, value: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A constant tensor, made once per device and dtype."""
        full = (key, dtype)
        if full not in self.cache:
            self.cache[full] = torch.as_tensor(value, dtype=dtype, device=self.shared.device)
        return self.cache[full]

    def take(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """θ[indices]: shape indices.shape, or (B, *indices.shape) when an input enters them."""
        array = np.asarray(indices)
        index = self.tensor(("take", array.tobytes(), array.shape), array)
        if self.per_sample is not None and self.dependent[array].any():
            return self.per_sample[:, index.reshape(-1)].reshape(-1, *array.shape)
        return self.shared[index.reshape(-1)].reshape(array.shape)


def _slots(layer: _ProductLayer) -> list[list[tuple[str, list[int], np.ndarray]]]:
    """The layer's gates as slots of groups: [(name, wires, parameter indices (k, p))]."""
    depth = max(len(gates) for gates in layer.gates.values())
    slots = []
    for slot in range(depth):
        groups: dict[str, tuple[list[int], list[tuple[int, ...]]]] = {}
        for wire in sorted(layer.gates):
            gates = layer.gates[wire]
            if slot < len(gates):
                wires, params = groups.setdefault(gates[slot].name, ([], []))
                wires.append(wire)
                params.append(gates[slot].params)
        slots.append(
            [
                (name, wires, np.asarray(params, dtype=np.int64))
                for name, (wires, params) in groups.items()
            ]
        )
    return slots


def _apply_two_qubit(
    state: torch.Tensor, matrix: torch.Tensor, a: int, b: int, n: int
) -> torch.Tensor:
    """Apply a 4×4 gate (4, 4) | (B, 4, 4) on wires (a, b), a the more significant of the pair
    in the matrix's basis |q_a q_b⟩: (B, 2^n) -> (B, 2^n)."""
    batch = state.shape[0]
    psi = state.reshape((batch,) + (2,) * n).movedim((1 + a, 1 + b), (-2, -1))
    shape = psi.shape
    flat = psi.reshape(batch, -1, 4)
    out = flat @ matrix.mT if matrix.dim() == 2 else torch.bmm(flat, matrix.mT)
    return out.reshape(shape).movedim((-2, -1), (1 + a, 1 + b)).reshape(batch, -1)
