"""Circuits as plain real tensor operations, for graphs that have no complex numbers (ONNX).

:class:`RealPairCircuit` simulates a :class:`qcalo.quantum.spec.CircuitSpec` on a statevector
held as a pair of real tensors (real part, imaginary part), each (B, 2^n), with only
elementwise products, sums, slices, gathers by constant indices and real matrix products: the
operations every ONNX runtime has. It is written out gate by gate from the spec (PennyLane's
gate definitions, wire 0 the most significant bit of a basis-state index), independently of the
torch engine's fused strategies, and the tests hold the two equal.

:func:`prepare_for_export` returns a copy of a model in which every
:class:`~qcalo.quantum.QuantumLayer` is such a circuit with the same weights, and the
data-independent matrices of the quantum mixer (:class:`~qcalo.quantum.OrthogonalCircuit`) and
of the QINN's real circuit (:class:`~qcalo.quantum.real_circuit.RealLayeredCircuit`) are
computed once and held as constants.

Example::

    >>> import torch
    >>> from qcalo.quantum import CircuitSpec, QuantumLayer
    >>> layer = QuantumLayer(CircuitSpec(n_qubits=3, n_layers=2, measurements=("z", "zz")), seed=0)
    >>> x = torch.rand(4, 3)
    >>> torch.allclose(RealPairCircuit.from_layer(layer)(x), layer(x), atol=1e-5)
    True
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.orthogonal import OrthogonalCircuit
from qcalo.quantum.real_circuit import RealLayeredCircuit
from qcalo.quantum.spec import CircuitSpec

__all__ = ["RealPairCircuit", "prepare_for_export"]

# A 2×2 complex matrix as four (re, im) pairs: ((m00, m01), (m10, m11)), each entry a pair of
# real tensors broadcastable against (B, 1, 1) (a per-event gate) or scalars (a fixed gate).
_Pair = tuple[Tensor, Tensor]
_Gate = tuple[tuple[_Pair, _Pair], tuple[_Pair, _Pair]]


def _mul(a: _Pair, b: _Pair) -> _Pair:
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def _add(a: _Pair, b: _Pair) -> _Pair:
    return a[0] + b[0], a[1] + b[1]


def _matmul(a: _Gate, b: _Gate) -> _Gate:
    """The 2×2 complex product a·b."""
    return (
        (_add(_mul(a[0][0], b[0][0]), _mul(a[0][1], b[1][0])),
         _add(_mul(a[0][0], b[0][1]), _mul(a[0][1], b[1][1]))),
        (_add(_mul(a[1][0], b[0][0]), _mul(a[1][1], b[1][0])),
         _add(_mul(a[1][0], b[0][1]), _mul(a[1][1], b[1][1]))),
    )  # fmt: skip


def _rotation(axis: str, theta: Tensor) -> _Gate:
    """R_X/R_Y/R_Z(θ) = exp(-iθσ/2), θ of any shape (radians)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    zero = torch.zeros_like(c)
    if axis == "X":  # [[c, -i s], [-i s, c]]
        return ((c, zero), (zero, -s)), ((zero, -s), (c, zero))
    if axis == "Y":  # [[c, -s], [s, c]]
        return ((c, zero), (-s, zero)), ((s, zero), (c, zero))
    # Z: diag(e^{-iθ/2}, e^{iθ/2})
    return ((c, -s), (zero, zero)), ((zero, zero), (c, s))


def _apply_gate(re: Tensor, im: Tensor, gate: _Gate, wire: int, n: int) -> tuple[Tensor, Tensor]:
    """Apply a 2×2 gate to ``wire`` of the state (re, im), each (B, 2^n)."""
    batch = re.shape[0]
    shape = (batch, 2**wire, 2, 2 ** (n - wire - 1))
    re4, im4 = re.reshape(shape), im.reshape(shape)
    s0: _Pair = (re4[:, :, 0], im4[:, :, 0])
    s1: _Pair = (re4[:, :, 1], im4[:, :, 1])
    out0 = _add(_mul(gate[0][0], s0), _mul(gate[0][1], s1))
    out1 = _add(_mul(gate[1][0], s0), _mul(gate[1][1], s1))
    new_re = torch.stack([out0[0], out1[0]], dim=2).reshape(batch, -1)
    new_im = torch.stack([out0[1], out1[1]], dim=2).reshape(batch, -1)
    return new_re, new_im


def _bits(n: int) -> np.ndarray:
    """(2^n, n) bits of every basis index, wire 0 the most significant."""
    index = np.arange(2**n)
    return (index[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1


def _qft_matrix(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the (symmetric) QFT matrix F[j, k] = e^{2πi jk/N}/√N."""
    dim = 2**n
    phase = 2 * np.pi * np.outer(np.arange(dim), np.arange(dim)) / dim
    return np.cos(phase) / math.sqrt(dim), np.sin(phase) / math.sqrt(dim)


class RealPairCircuit(nn.Module):
    """A :class:`CircuitSpec` on a (re, im) pair of real statevectors: inputs (B, n) radians →
    the spec's measured features (B, n_outputs), as :class:`qcalo.quantum.QuantumLayer`.

    ``rotation_weights`` (n_layers, n, 2 | 3) and ``entangler_weights`` (n_layers, n_pairs) or
    None are the circuit's angles in radians, held as buffers (the module is for inference).
    The simulation runs in the weights' dtype; the output has the inputs' dtype.
    """

    rotation_weights: Tensor
    entangler_weights: Tensor | None

    def __init__(
        self, spec: CircuitSpec, rotation_weights: Tensor, entangler_weights: Tensor | None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("rotation_weights", rotation_weights.detach().clone())
        if entangler_weights is not None:
            self.register_buffer("entangler_weights", entangler_weights.detach().clone())
        else:
            self.entangler_weights = None
        n, dim = spec.n_qubits, spec.dim
        bits = _bits(n)
        dtype = rotation_weights.dtype
        # CNOT (control c, target t): amplitude k takes the amplitude of k with bit t flipped
        # where bit c is 1 (a permutation, its own inverse).
        gathers = []
        for control, target in spec.entangler_pairs:
            flip = np.where(bits[:, control] == 1, 1 << (n - 1 - target), 0)
            gathers.append(torch.as_tensor(np.arange(dim) ^ flip, dtype=torch.long))
        self._cnot_gathers = gathers
        # CZ: -1 where both bits are 1. CRZ(φ): phase φ·coef with coef = ∓1/2 for target 0/1
        # where the control is 1, else 0. IsingZZ(φ): phase -φ/2·z_c·z_t.
        signs, coefficients = [], []
        for control, target in spec.entangler_pairs:
            both = (bits[:, control] == 1) & (bits[:, target] == 1)
            signs.append(torch.as_tensor(np.where(both, -1.0, 1.0), dtype=dtype))
            if spec.entangler_gate == "crz":
                coef = np.where(
                    bits[:, control] == 1, np.where(bits[:, target] == 1, 0.5, -0.5), 0.0
                )
            else:
                z_c, z_t = 1 - 2 * bits[:, control], 1 - 2 * bits[:, target]
                coef = -0.5 * z_c * z_t
            coefficients.append(coef)
        self._cz_signs = signs
        self._phase_coefficients = (
            torch.as_tensor(np.stack(coefficients), dtype=dtype) if coefficients else None
        )  # (n_pairs, 2^n)
        qft_re, qft_im = _qft_matrix(n)
        self._qft = (torch.as_tensor(qft_re, dtype=dtype), torch.as_tensor(qft_im, dtype=dtype))
        z = 1.0 - 2.0 * bits  # (2^n, n): eigenvalue of Z_i on each basis state
        self._z_signs = torch.as_tensor(z, dtype=dtype)
        pairs = spec.zz_pairs
        self._zz_signs = (
            torch.as_tensor(np.stack([z[:, i] * z[:, j] for i, j in pairs], axis=1), dtype=dtype)
            if pairs
            else None
        )

    @classmethod
    def from_layer(cls, layer: nn.Module) -> RealPairCircuit:
        """The same circuit and weights as a :class:`qcalo.quantum.QuantumLayer`."""
        return cls(layer.spec, layer.rotation_weights, layer.entangler_weights)  # type: ignore[arg-type]

    @property
    def n_outputs(self) -> int:
        return self.spec.n_outputs

    def _rotations(self, layer: int) -> _Gate:
        """The fused single-qubit rotation gates of one layer, each entry (n,) per wire."""
        w = self.rotation_weights[layer]
        if self.spec.rotations == "ryrz":  # RZ(b)·RY(a), RY first
            return _matmul(_rotation("Z", w[:, 1]), _rotation("Y", w[:, 0]))
        # Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ)
        return _matmul(
            _rotation("Z", w[:, 2]), _matmul(_rotation("Y", w[:, 1]), _rotation("Z", w[:, 0]))
        )

    def _entangle(self, re: Tensor, im: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        gate = self.spec.entangler_gate
        for p, _ in enumerate(self.spec.entangler_pairs):
            if gate == "cnot":
                index = self._cnot_gathers[p].to(re.device)
                re, im = re[:, index], im[:, index]
            elif gate == "cz":
                sign = self._cz_signs[p].to(re.device, re.dtype)
                re, im = re * sign, im * sign
            else:
                assert self.entangler_weights is not None and self._phase_coefficients is not None
                phase = self.entangler_weights[layer, p] * self._phase_coefficients[p].to(re.device)
                c, s = torch.cos(phase), torch.sin(phase)
                re, im = re * c - im * s, re * s + im * c
        return re, im

    def state(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Final statevector as (real part, imaginary part), each (B, 2^n), for inputs (B, n)."""
        spec, n = self.spec, self.spec.n_qubits
        x = inputs.to(self.rotation_weights.dtype)
        batch = x.shape[0]
        re = torch.zeros(batch, spec.dim, dtype=x.dtype, device=x.device)
        re = torch.cat([torch.ones_like(re[:, :1]), re[:, 1:]], dim=1)  # |0…0⟩
        im = torch.zeros_like(re)
        for layer in range(spec.n_layers):
            rotations = self._rotations(layer)
            for wire in range(n):
                fixed = tuple(
                    tuple((part[0][wire], part[1][wire]) for part in row) for row in rotations
                )
                if layer == 0 or spec.reupload:
                    embed = _rotation(spec.embedding, x[:, wire].reshape(batch, 1, 1))
                    gate = _matmul(fixed, embed)  # type: ignore[arg-type]
                else:
                    gate = fixed  # type: ignore[assignment]
                re, im = _apply_gate(re, im, gate, wire, n)
            re, im = self._entangle(re, im, layer)
        if spec.final_qft:  # state ← F·state; F symmetric, so rows: state @ F
            f_re, f_im = (m.to(re.device, re.dtype) for m in self._qft)
            re, im = re @ f_re - im @ f_im, re @ f_im + im @ f_re
        return re, im

    def forward(self, inputs: Tensor) -> Tensor:
        """(B, n) angles, radians → (B, n_outputs) features in the spec's measurement order."""
        re, im = self.state(inputs)
        probs = re * re + im * im
        parts = []
        for m in self.spec.measurements:
            if m == "z":
                parts.append(probs @ self._z_signs.to(probs.device, probs.dtype))
            elif m == "zz":
                assert self._zz_signs is not None
                parts.append(probs @ self._zz_signs.to(probs.device, probs.dtype))
            elif m == "probs":
                parts.append(probs)
            else:
                parts.append(torch.cat([re, im], dim=1))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return out.to(inputs.dtype)


class _ConstantMatrix(nn.Module):
    """Stands in for a circuit whose matrix does not depend on the data."""

    matrix_value: Tensor

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix_value", value.detach().clone())


def prepare_for_export(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose circuits are real tensor operations (module docstring).

    Every :class:`~qcalo.quantum.QuantumLayer` becomes a :class:`RealPairCircuit` with its
    weights; :class:`~qcalo.quantum.OrthogonalCircuit`'s ``matrix()`` and
    :class:`~qcalo.quantum.real_circuit.RealLayeredCircuit`'s ``layer_matrices()`` return their
    values, computed once here.
    """

    clone = copy.deepcopy(model)
    replacements: list[tuple[str, nn.Module]] = []
    with torch.no_grad():
        for name, module in clone.named_modules():
            if isinstance(module, QuantumLayer):
                replacements.append((name, RealPairCircuit.from_layer(module)))
            elif isinstance(module, OrthogonalCircuit):
                _freeze(module, "matrix", module.matrix())
            elif isinstance(module, RealLayeredCircuit):
                _freeze(module, "layer_matrices", module.layer_matrices())
    for name, replacement in replacements:
        parent_name, _, child = name.rpartition(".")
        if not name:
            return replacement
        setattr(clone.get_submodule(parent_name) if parent_name else clone, child, replacement)
    return clone


def _freeze(module: nn.Module, method: str, value: Tensor) -> None:
    """Make ``module.<method>()`` return the constant ``value`` (a buffer of a child module)."""
    holder = _ConstantMatrix(value)
    module.add_module(f"_frozen_{method}", holder)
    object.__setattr__(module, method, lambda: holder.matrix_value)
