"""The ``"small"`` strategy: small registers and batches simulated in NumPy, on the CPU.

Why NumPy: at 6 qubits and batch 1 a forward+backward step is a few thousand complex
multiply-adds, and what it costs is the number of array operations, not their arithmetic. A
torch CPU op costs 1.5-6 µs of dispatch (an 8×8 complex matmul ~6 µs), the same NumPy op
0.3-1.5 µs; this path runs ~70 of them per step and no autograd graph, where the torch paths
ran ~100 torch ops (and the ``"unitary"`` path a few 2^n×2^n GEMMs besides). CUDA tensors
never take it (:func:`available`).

The circuit, with the register split into halves A (wires < n//2) and B (the rest), so that a
state of one sample is a (2^h, 2^r) matrix Ψ:

* every layer's single-qubit gates (embedding folded in where the inputs enter) are two
  Kronecker products A_l, B_l, applied as Ψ ← A_l Ψ B_lᵀ (two small matmuls for the batch),
  starting from |0…0⟩; then the entangler (a gather of amplitudes for CNOTs, a diagonal for
  CZ / CRZ / IsingZZ), the optional final QFT (an FFT) and the readout |ψ|² @ signs;
* the backward is the adjoint method on saved layer states: with X = Ψ_in B_lᵀ,
  ∂L/∂A_l = Λ Xᴴ, Λ_X = A_lᴴ Λ, ∂L/∂B_lᵀ = Ψ_inᴴ Λ_X, Λ_in = Λ_X conj(B_l) (torch's
  convention for complex gradients, ∂L/∂Re + i·∂L/∂Im);
* weight and input derivatives: every gate is a product of rotations exp(-iθP/2), whose
  derivative in θ is exactly ½·(the gate with θ + π). The Kronecker products are built for
  every "variant" (gate j of the half replaced by such a shifted gate) in the same few ops as
  the products themselves, and ∂L/∂θ = ½ Re Σ conj(∂L/∂A) ⊙ A_variant: one small matmul per
  layer group.

Memory grows with the variants (batch × layers with inputs × (1 + h·(k+1)) × 4^h amplitudes),
so ``"auto"`` offers this path only under :data:`SMALL_MEMORY_BUDGET` (:func:`small_bytes`).
Values and gradients agree with the torch paths and PennyLane to floating-point rounding; the
arithmetic runs in the circuit's precision (complex64 for float32 weights). Second derivatives
(``create_graph=True``) differentiate the ``"gates"`` recomputation, like the other fused paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qcalo.quantum import statevector as sv
from qcalo.quantum.spec import CircuitSpec

#: "auto" considers the small path only while its arrays (:func:`small_bytes`) stay below this.
SMALL_MEMORY_BUDGET = 64 * 2**20


def available(device: torch.device) -> bool:
    """The small path runs on the CPU only (NumPy)."""
    return device.type == "cpu"


def small_bytes(spec: CircuitSpec, batch: int, itemsize: int = 8) -> int:
    """Rough bytes of the small path's arrays: the variant Kronecker products and layer states."""
    n, k = spec.n_qubits, spec.rotation_weight_shape[-1]
    input_layers = spec.n_layers if spec.reupload else 1
    shared_layers = spec.n_layers - input_layers
    variants = 0
    for w in _half_sizes(n):
        variants += (1 + w * (k + 1)) * 4**w
    kron = (batch * input_layers + shared_layers) * variants
    states = 3 * batch * spec.dim * (spec.n_layers + 2)
    return (kron + states) * itemsize


def _half_sizes(n: int) -> list[int]:
    h = n // 2
    return [h, n - h] if h else [n]


class SmallPlan:
    """Per-(spec, dtype) constants of the small path: index tables, signs, entangler diagonals."""

    def __init__(self, spec: CircuitSpec, real_dtype: np.dtype) -> None:
        self.spec = spec
        n = spec.n_qubits
        self.real = np.dtype(real_dtype)
        self.complex = np.dtype(np.complex64 if self.real == np.float32 else np.complex128)
        self.k = spec.rotation_weight_shape[-1]
        h = n // 2
        # Halves as (first wire, wires); a 1-qubit register has only the B half.
        self.halves = [(0, h), (h, n - h)] if h else [(0, n)]
        self.dims = [2**w for _, w in self.halves]
        pairs = spec.entangler_pairs
        self.gather: np.ndarray | None = None
        self.inverse: np.ndarray | None = None
        self.cz: np.ndarray | None = None
        self.phase_coeffs: np.ndarray | None = None
        if pairs and spec.entangler_gate == "cnot":
            self.gather = sv.cnot_gather_index(n, pairs)
            self.inverse = self.gather.argsort()
        elif pairs and spec.entangler_gate == "cz":
            self.cz = sv.cz_diagonal(n, pairs).astype(self.real)
        elif pairs:
            self.phase_coeffs = sv.phase_coefficients(n, pairs, spec.entangler_gate).astype(
                self.real
            )
        signs = []
        if "z" in spec.measurements:
            signs.append(sv.z_signs(n))
        if "zz" in spec.measurements:
            signs.append(sv.zz_signs(n, spec.zz_pairs))
        self.signs = np.concatenate(signs, axis=1).astype(self.real) if signs else None
        self.signs_t = np.ascontiguousarray(self.signs.T) if self.signs is not None else None
        self.slices: dict[str, slice] = spec.measurement_slices
        # Shifts of (φ, θ, ω): row 0 none, row 1 + κ adds π to weight κ.
        shifts = np.zeros((1 + self.k, self.k))
        shifts[1:] = np.eye(self.k) * np.pi
        self.shifts = shifts.astype(self.real)
        self.input_shift = np.array([0.0, np.pi], dtype=self.real)
        # Groups of halves built together (equal sizes): (first wire, halves, wires each).
        if len(self.halves) == 2 and self.halves[0][1] == self.halves[1][1]:
            self.groups = [(0, 2, h)]
        else:
            self.groups = [(first, 1, w) for first, w in self.halves]
        self._variant_index: dict[tuple[int, int, int, int], np.ndarray] = {}
        self._first_layer_index: dict[tuple[int, bool], np.ndarray] = {}
        self._spread: dict[tuple[int, int], np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.spec.dim

    def first_layer_index(self, vr: int, want_inputs: bool) -> np.ndarray:
        """(V·2, Ve·2) picks of R entries (vr variants × 4, then a zero) for :func:`_first_layer`.

        Output variant v, row α: Σ_β R_{r(v)}[α, β] · e_{e(v)}[β] with (r, e) = (v, 0) for the
        gate and its weight shifts, (0, 1) for the input shift.
        """
        key = (vr, want_inputs)
        if key not in self._first_layer_index:
            ve = 2 if want_inputs else 1
            combos = [(r, 0) for r in range(vr)] + ([(0, 1)] if want_inputs else [])
            zero = vr * 4
            index = np.full((len(combos) * 2, ve * 2), zero, dtype=np.intp)
            for v, (r, e) in enumerate(combos):
                for alpha in range(2):
                    for beta in range(2):
                        index[v * 2 + alpha, e * 2 + beta] = r * 4 + alpha * 2 + beta
            self._first_layer_index[key] = index
        return self._first_layer_index[key]

    def spread(self, w: int, m: int) -> np.ndarray:
        """(w·m, w·m^w) 0/1: item j's entry e goes to every product entry whose digit j is e.

        Items are m = 2 vectors or m = 4 row-major 2×2 matrices; product entries are indexed
        first item most significant (for matrices: (row, column) of the Kronecker product, its
        row bits and column bits each first-item-major).
        """
        key = (w, m)
        if key not in self._spread:
            size = m**w
            out = np.zeros((w * m, w * size), dtype=self.complex)
            entries = np.arange(size)
            for j in range(w):
                shift = w - 1 - j
                if m == 2:
                    digit = (entries >> shift) & 1
                else:  # matrix entry (row, col) of a 2^w × 2^w product, row-major
                    d = 2**w
                    row, col = entries // d, entries % d
                    digit = 2 * ((row >> shift) & 1) + ((col >> shift) & 1)
                out[j * m + digit, j * size + entries] = 1.0
            self._spread[key] = out
        return self._spread[key]

    def variant_index(self, first: int, count: int, w: int, v: int) -> np.ndarray:
        """(count, Nv, w) indices into the flattened (wire, variant) axis, Nv = 1 + w·(v-1).

        Row 0 takes every wire's item 0; row 1 + j·(v-1) + (u-1) takes wire j's variant u.
        """
        key = (first, count, w, v)
        if key not in self._variant_index:
            rows = 1 + w * (v - 1)
            index = np.zeros((count, rows, w), dtype=np.intp)
            for c in range(count):
                wires = first + c * w + np.arange(w)
                index[c] = wires * v
                for j in range(w):
                    for u in range(1, v):
                        index[c, 1 + j * (v - 1) + (u - 1), j] += u
            self._variant_index[key] = index
        return self._variant_index[key]


_PLANS: dict[tuple[CircuitSpec, np.dtype], SmallPlan] = {}


def plan(spec: CircuitSpec, real_dtype: np.dtype) -> SmallPlan:
    """The cached :class:`SmallPlan` of a spec in a real precision."""
    key = (spec, np.dtype(real_dtype))
    if key not in _PLANS:
        _PLANS[key] = SmallPlan(spec, real_dtype)
    return _PLANS[key]


# ----------------------------------------------------------------------------------------------
# Gates as (…, 2, 2) complex arrays


def _rotation_tables(kind: str, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(half-angle map (k, 3), picks (36, 8)) of :func:`qcalo.quantum.statevector.rotation_gates`,
    the picks' columns interleaved (re, im) so that the result views as complex."""
    key = (kind, np.dtype(dtype))
    if key not in _ROTATION_TABLES:
        half = sv._HALF_ANGLES if kind == "rot" else sv._HALF_ANGLES[1:]
        picks = sv._ROTATION_PICKS[:, [0, 4, 1, 5, 2, 6, 3, 7]]
        _ROTATION_TABLES[key] = (half.astype(dtype), picks.astype(dtype))
    return _ROTATION_TABLES[key]


_ROTATION_TABLES: dict[tuple[str, np.dtype], tuple[np.ndarray, np.ndarray]] = {}


def _rotations(angles: np.ndarray, kind: str, dtype: np.dtype) -> np.ndarray:
    """Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ) ("rot") or RZ(b)·RY(a) ("ryrz"): (…, k) -> (…, 2, 2) complex.

    Closed form in 6 array ops: half-angles θ/2, (φ±ω)/2 by one matmul, their cos and sin, and
    the 8 real numbers of the matrix as signed products of those (one matmul).
    """
    half, picks = _rotation_tables(kind, angles.dtype)
    h = angles @ half
    trig = np.concatenate([np.cos(h), np.sin(h)], axis=-1)  # (…, 6)
    entries = (trig[..., :, None] * trig[..., None, :]).reshape(*trig.shape[:-1], 36) @ picks
    return entries.view(dtype).reshape(*angles.shape[:-1], 2, 2)


def _embedding(x: np.ndarray, kind: str, dtype: np.dtype) -> np.ndarray:
    """R_X / R_Y / R_Z(x): (…,) -> (…, 2, 2) complex."""
    c, s = np.cos(x * 0.5), np.sin(x * 0.5)
    zero = np.zeros_like(c)
    if kind == "Y":
        out = np.stack([c, -s, s, c], axis=-1).astype(dtype)
    elif kind == "X":
        out = np.stack([c + 0j, -1j * s, -1j * s, c + 0j], axis=-1).astype(dtype)
    else:
        out = np.stack([c - 1j * s, zero + 0j, zero + 0j, c + 1j * s], axis=-1).astype(dtype)
    return out.reshape(*x.shape, 2, 2)


def _products(items: np.ndarray, p: SmallPlan, matrix: bool) -> list[np.ndarray]:
    """Kronecker products per half of every variant: items (…, n, V, 2[, 2]) -> [(…, Nv, d[, d])].

    ``items`` are gates' first columns (the state a layer makes from |0…0⟩) or whole gates;
    index 0 of V is the item itself, 1.. its shifted variants. Row 0 of Nv = 1 + w·(V-1) is the
    plain product, row 1 + j·(V-1) + (v-1) has item j of the half replaced by its variant v.
    One gather picks the rows' items, one matmul spreads item j's entries over the product's
    (:meth:`SmallPlan.spread`), one product over j multiplies them (equal halves together).
    """
    if matrix:  # (…, n, V, 2, 2) -> (…, n, V, 4)
        items = items.reshape(*items.shape[:-2], 4)
    v, m = items.shape[-2], items.shape[-1]
    lead = items.shape[:-3]
    flat = items.reshape(*lead, -1, m)
    out: list[np.ndarray] = []
    for first, count, w in p.groups:
        table = np.take(flat, p.variant_index(first, count, w, v), axis=-2)  # (…, count, Nv, w, m)
        size = m**w
        spread = table.reshape(*table.shape[:-2], w * m) @ p.spread(w, m)
        prod = spread.reshape(*table.shape[:-2], w, size).prod(axis=-2)  # (…, count, Nv, m^w)
        if matrix:
            d = 2**w
            prod = prod.reshape(*prod.shape[:-1], d, d)
        out += [np.take(prod, c, axis=-4 if matrix else -3) for c in range(count)]
    return out


def _variants(
    rot: np.ndarray, emb: np.ndarray, want_weights: bool, want_inputs: bool, column: bool
) -> np.ndarray:
    """R·E and its variants: rot (…L, n, Vr, 2, 2), emb (B, n, Ve, 2, 2) -> (B, …L, n, V, 2[, 2]).

    Variants: 0 the gate, 1..k the weight shifts (``want_weights``), last the input shift
    (``want_inputs``). ``column``: only the first column (the gate acting on |0⟩).
    """
    e = emb[..., :, :1] if column else emb  # (B, n, Ve, 2, c)
    extra = rot.ndim - 4  # leading layer axes of rot
    e = e.reshape(e.shape[0], *(1,) * extra, e.shape[1], 1, e.shape[2], 2, e.shape[-1])
    r = rot[None, ..., :, :, None, :, :]  # (1, …L, n, Vr, 1, 2, 2)
    # r @ e written out: NumPy's matmul on stacks of 2×2 matrices costs ~30 ns per matrix.
    both = r[..., :, 0, None] * e[..., 0, None, :] + r[..., :, 1, None] * e[..., 1, None, :]
    parts = [both[..., :, 0, :, :]]  # (B, …L, n, Vr, 2, c): the gate and its weight shifts
    if want_inputs:
        parts.append(both[..., :1, 1, :, :])
    out = np.concatenate(parts, axis=-3) if len(parts) > 1 else parts[0]
    return out[..., 0] if column else out


def _first_layer(
    p: SmallPlan, rot0: np.ndarray, emb: np.ndarray, want_weights: bool, want_inputs: bool
) -> list[np.ndarray]:
    """Layer 0's product vectors per half and variant: [(Nv, d, B)], batch axis last.

    Every wire's first column R_v·E(x)[:, 0] for all variants v is one small matmul per wire,
    M_i (V·2, Ve·2) @ [E(x)[:, 0]; E(x+π)[:, 0]] (Ve·2, B); the products over a half's wires
    then run with the batch innermost (NumPy's broadcasts over 2-wide inner axes cost ~10 ns
    per element, with B innermost they stream).
    """
    n = rot0.shape[0]
    vr, ve = rot0.shape[1], emb.shape[2]
    columns = emb[..., :, 0].transpose(1, 2, 3, 0).reshape(n, ve * 2, -1)  # (n, Ve·2, B)
    index = p.first_layer_index(vr, want_inputs)  # (V·2, Ve·2) into [R entries | 0]
    padded = np.concatenate([rot0.reshape(n, vr * 4), np.zeros((n, 1), rot0.dtype)], axis=1)
    mats = np.take(padded, index, axis=1)  # (n, V·2, Ve·2)
    vectors = mats @ columns  # (n, V·2, B)
    v = index.shape[0] // 2
    flat = vectors.reshape(n * v, 2, -1)
    out: list[np.ndarray] = []
    for first, count, w in p.groups:
        table = np.take(flat, p.variant_index(first, count, w, v), axis=0)  # (c, Nv, w, 2, B)
        prod = table[:, :, 0]
        for j in range(1, w):
            item = table[:, :, j]
            prod = (prod[:, :, :, None, :] * item[:, :, None, :, :]).reshape(
                *prod.shape[:2], -1, prod.shape[-1]
            )
        out += [prod[c] for c in range(count)]
    return out


class _Tape:
    """What the forward keeps for the backward."""

    def __init__(self) -> None:
        self.first: list[np.ndarray] = []  # layer 0's per-half product vectors (Nv, d, B)
        self.krons: dict[int, list[np.ndarray]] = {}  # layer -> per-half (…, Nv, d, d)
        self.states_in: dict[int, np.ndarray] = {}  # Ψ before layer l ≥ 1's gates (B, D)
        self.partial: dict[int, np.ndarray] = {}  # after its B half
        self.after_entangler: list[np.ndarray] = []  # only for trainable phases
        self.phases: list[np.ndarray] = []
        self.final: np.ndarray | None = None


def forward(
    p: SmallPlan,
    inputs: np.ndarray,
    weights: np.ndarray,
    entangler: np.ndarray | None,
    want_weights: bool,
    want_inputs: bool,
    keep: bool,
) -> tuple[np.ndarray, _Tape | None]:
    """(features (B, n_outputs), tape or None) for inputs (B, n), weights (L, n, k), entangler (L, P)."""
    spec = p.spec
    batch = inputs.shape[0]
    layers = spec.n_layers
    cdt = p.complex
    if want_weights:
        rot = _rotations(
            weights[:, :, None, :] + p.shifts, spec.rotations, cdt
        )  # (L, n, 1+k, 2, 2)
    else:
        rot = _rotations(weights, spec.rotations, cdt)[:, :, None]  # (L, n, 1, 2, 2)
    if want_inputs:
        emb = _embedding(inputs[:, :, None] + p.input_shift, spec.embedding, cdt)  # (B, n, 2, 2, 2)
    else:
        emb = _embedding(inputs, spec.embedding, cdt)[:, :, None]  # (B, n, 1, 2, 2)
    tape = _Tape() if keep else None
    dims = p.dims
    # Layer 0 on |0…0⟩: the product of every wire's first column, per half, batch last.
    first = _first_layer(p, rot[0], emb, want_weights, want_inputs)  # [(Nv, d, B)]
    if len(dims) == 2:
        state = (first[0][0].T[:, :, None] * first[1][0].T[:, None, :]).reshape(batch, p.dim)
    else:
        state = np.ascontiguousarray(first[0][0].T)
    if tape is not None:
        tape.first = first
    if layers > 1:
        if spec.reupload:  # per sample: (B, L-1, n, V, 2, 2) -> per half (B, L-1, Nv, d, d)
            krons = _products(_variants(rot[1:], emb, want_weights, want_inputs, False), p, True)
        else:  # shared: (L-1, n, V, 2, 2) -> per half (L-1, Nv, d, d)
            krons = _products(rot[1:], p, True)
    for layer in range(layers):
        if layer > 0:
            if spec.reupload:
                mats = [kron[:, layer - 1] for kron in krons]
            else:
                mats = [kron[layer - 1] for kron in krons]
            if tape is not None:
                tape.krons[layer] = mats
                tape.states_in[layer] = state
            if len(dims) == 2:
                b = mats[1][..., 0, :, :]
                a = mats[0][..., 0, :, :]
                if spec.reupload:
                    x = state.reshape(batch, dims[0], dims[1]) @ b.swapaxes(-1, -2)
                else:  # shared: one GEMM over all rows
                    x = (state.reshape(-1, dims[1]) @ b.T).reshape(batch, dims[0], dims[1])
                state = (a @ x).reshape(batch, p.dim)
            else:
                x = state.reshape(batch, 1, dims[0])
                state = (x @ mats[0][..., 0, :, :].swapaxes(-1, -2)).reshape(batch, p.dim)
            if tape is not None:
                tape.partial[layer] = x
        if p.gather is not None:
            state = state[:, p.gather]
        elif p.cz is not None:
            state = state * p.cz
        elif p.phase_coeffs is not None:
            assert entangler is not None
            theta = (entangler[layer] @ p.phase_coeffs) * -0.5
            phase = (np.cos(theta) + 1j * np.sin(theta)).astype(cdt)
            state = state * phase
            if tape is not None:
                tape.phases.append(phase)
                tape.after_entangler.append(state)
    if spec.final_qft:
        state = np.fft.ifft(state, axis=1, norm="ortho").astype(cdt)
    if tape is not None:
        tape.final = state
    return readout(p, state), tape


def readout(p: SmallPlan, state: np.ndarray) -> np.ndarray:
    """Features (B, n_outputs) of final amplitudes (B, D)."""
    spec = p.spec
    probs = state.real * state.real + state.imag * state.imag
    expectations = probs @ p.signs if p.signs is not None else None
    parts = []
    for m in spec.measurements:
        if m == "probs":
            parts.append(probs)
        elif m == "state":
            parts.append(np.concatenate([state.real, state.imag], axis=1))
        else:
            assert expectations is not None
            n = spec.n_qubits
            z_first = "z" in spec.measurements
            if m == "z":
                parts.append(expectations[:, :n])
            else:
                parts.append(expectations[:, n:] if z_first else expectations)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _readout_backward(p: SmallPlan, state: np.ndarray, grad: np.ndarray) -> np.ndarray:
    sl = p.slices
    weights = None
    if p.signs_t is not None:
        cols = [grad[:, sl[m]] for m in ("z", "zz") if m in sl]
        g_exp = cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)
        weights = g_exp @ p.signs_t
    if "probs" in sl:
        weights = grad[:, sl["probs"]] if weights is None else weights + grad[:, sl["probs"]]
    lam = None
    if weights is not None:
        lam = state * (2 * weights)
    if "state" in sl:
        g = grad[:, sl["state"]]
        g_state = (g[:, : p.dim] + 1j * g[:, p.dim :]).astype(p.complex)
        lam = g_state if lam is None else lam + g_state
    assert lam is not None
    return lam.astype(p.complex, copy=False)


def backward(
    p: SmallPlan,
    tape: _Tape,
    grad: np.ndarray,
    batch: int,
    want_weights: bool,
    want_inputs: bool,
    want_entangler: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(∂L/∂inputs (B, n), ∂L/∂weights (L, n, k), ∂L/∂entangler (L, P)) from ∂L/∂features."""
    spec = p.spec
    assert tape.final is not None
    lam = _readout_backward(p, tape.final, grad)
    if spec.final_qft:
        lam = np.fft.fft(lam, axis=1, norm="ortho").astype(p.complex)
    dims = p.dims
    k, n = p.k, spec.n_qubits
    g_entangler = (
        np.zeros((spec.n_layers, len(spec.entangler_pairs)), dtype=p.real)
        if want_entangler and p.phase_coeffs is not None
        else None
    )
    gates = want_weights or want_inputs
    g_weights = np.zeros((spec.n_layers, n, k), dtype=p.real) if want_weights else None
    g_inputs = np.zeros((batch, n), dtype=p.real) if want_inputs else None

    def add(layer: int, half: int, dots: np.ndarray, per_sample: bool) -> None:
        """Scatter ½ Re Σ conj(G) ⊙ variant, dots (B, Nv-1) | (Nv-1,), into the gradients."""
        first, w = p.halves[half]
        dots = dots.reshape(*dots.shape[:-1], w, -1)  # (…, w, V-1)
        if g_weights is not None:
            g_weights[layer, first : first + w] += (
                dots[..., :k].sum(0) if per_sample else dots[..., :k]
            )
        if g_inputs is not None and per_sample:
            g_inputs[:, first : first + w] += dots[..., -1]

    for layer in reversed(range(spec.n_layers)):
        if p.gather is not None:
            assert p.inverse is not None
            lam = lam[:, p.inverse]
        elif p.cz is not None:
            lam = lam * p.cz
        elif p.phase_coeffs is not None:
            if g_entangler is not None:
                dtheta = (lam * tape.after_entangler[layer].conj()).imag.sum(0)
                g_entangler[layer] = (p.phase_coeffs @ dtheta) * -0.5
            lam = lam * tape.phases[layer].conj()
        if not gates:
            continue
        if layer == 0:
            first = tape.first
            if len(dims) == 2:  # ψ = a ⊗ b: ∂L/∂a = Λ conj(b), ∂L/∂b = Λᵀ conj(a), as (d, B)
                lam3 = lam.reshape(batch, dims[0], dims[1])
                a, b = first[0][0], first[1][0]
                g_halves = [
                    (lam3 * b.T.conj()[:, None, :]).sum(2).T,
                    (lam3 * a.T.conj()[:, :, None]).sum(1).T,
                ]
            else:
                g_halves = [lam.T]
            for half, (prod, g) in enumerate(zip(first, g_halves, strict=True)):
                dots = (prod[1:] * g.conj()).real.sum(1) * 0.5  # (Nv-1, B)
                add(0, half, dots.T, True)
            break
        mats = tape.krons[layer]
        x = tape.partial[layer]
        psi_in = tape.states_in[layer]
        per_sample = spec.reupload
        if len(dims) == 2:
            lam3 = lam.reshape(batch, dims[0], dims[1])
            a, b = mats[0][..., 0, :, :], mats[1][..., 0, :, :]
            psi3 = psi_in.reshape(batch, dims[0], dims[1])
            lam_x = a.conj().swapaxes(-1, -2) @ lam3
            if per_sample:
                g_a = lam3 @ x.conj().swapaxes(-1, -2)
                g_b = (psi3.conj().swapaxes(-1, -2) @ lam_x).swapaxes(-1, -2)
                lam = (lam_x @ b.conj()).reshape(batch, p.dim)
            else:  # summed over the batch: one GEMM each instead of B small ones
                g_a = np.tensordot(lam3, x.conj(), axes=([0, 2], [0, 2]))
                g_b = np.tensordot(psi3.conj(), lam_x, axes=([0, 1], [0, 1])).T
                lam = (lam_x.reshape(-1, dims[1]) @ b.conj()).reshape(batch, p.dim)
            g_mats = [g_a, g_b]
        else:
            a = mats[0][..., 0, :, :]
            lam3 = lam.reshape(batch, 1, dims[0])
            g_mats = [lam3.swapaxes(-1, -2) @ x.conj()]
            lam = (lam3 @ a.conj()).reshape(batch, p.dim)
        for half, (kron, g) in enumerate(zip(mats, g_mats, strict=True)):
            if not per_sample and g.ndim == 3:
                g = g.sum(0)
            d2 = g.shape[-1] ** 2
            variants = kron[..., 1:, :, :].reshape(*kron.shape[:-3], -1, d2)
            dots = (variants @ g.conj().reshape(*g.shape[:-2], d2, 1))[..., 0].real * 0.5
            add(layer, half, dots, per_sample)
    return g_inputs, g_weights, g_entangler


# ----------------------------------------------------------------------------------------------
# torch integration


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy()


def _circuit_plan(circuit: Any, dtype: np.dtype) -> SmallPlan:
    """The circuit's plan for a real dtype, memoised on the circuit (hashing a spec costs µs)."""
    plans = circuit.__dict__.setdefault("_small_plans", {})
    if dtype not in plans:
        plans[dtype] = plan(circuit.spec, dtype)
    return plans[dtype]


def features(
    circuit: Any, inputs: torch.Tensor, weights: torch.Tensor, entangler: Any
) -> torch.Tensor:
    """Measured features (B, n_outputs) through the small path, differentiable by autograd."""
    tensors = (inputs, weights, entangler)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _SmallFunction.apply(inputs, weights, entangler, circuit)
    p = _circuit_plan(circuit, _numpy(weights).dtype)  # type: ignore[union-attr]
    out, _ = forward(p, _numpy(inputs), _numpy(weights), _numpy(entangler), False, False, False)  # type: ignore[arg-type]
    return torch.from_numpy(np.ascontiguousarray(out))


def state(
    circuit: Any, inputs: torch.Tensor, weights: torch.Tensor, entangler: Any
) -> torch.Tensor:
    """Final statevector (B, 2^n) complex (no gradient: for inspection and tests)."""
    p = _circuit_plan(circuit, _numpy(weights).dtype)  # type: ignore[union-attr]
    _, tape = forward(p, _numpy(inputs), _numpy(weights), _numpy(entangler), False, False, True)  # type: ignore[arg-type]
    assert tape is not None and tape.final is not None
    return torch.from_numpy(np.ascontiguousarray(tape.final))


class _SmallFunction(torch.autograd.Function):
    """features(circuit(x, w, φ)|0…0⟩) as one node whose forward and backward run in NumPy."""

    @staticmethod
    def forward(ctx, inputs, rotation_weights, entangler_weights, circuit):
        needs = ctx.needs_input_grad
        w = rotation_weights.detach().numpy()
        p = _circuit_plan(circuit, w.dtype)
        out, tape = forward(
            p,
            inputs.detach().numpy(),
            w,
            _numpy(entangler_weights),
            bool(needs[1]),
            bool(needs[0]),
            True,
        )
        ctx.circuit, ctx.plan, ctx.tape = circuit, p, tape
        ctx.save_for_backward(inputs, rotation_weights, entangler_weights)
        return torch.from_numpy(np.ascontiguousarray(out))

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            from qcalo.quantum.torch_backend import _recorded_backward

            return _recorded_backward(ctx, grad)
        needs = ctx.needs_input_grad
        inputs = ctx.saved_tensors[0]
        g_in, g_w, g_ent = backward(
            ctx.plan,
            ctx.tape,
            grad.detach().numpy().astype(ctx.plan.real, copy=False),
            inputs.shape[0],
            bool(needs[1]),
            bool(needs[0]),
            bool(needs[2]),
        )
        return (
            torch.from_numpy(g_in) if g_in is not None and needs[0] else None,
            torch.from_numpy(g_w) if g_w is not None and needs[1] else None,
            torch.from_numpy(g_ent) if g_ent is not None and needs[2] else None,
            None,
        )
