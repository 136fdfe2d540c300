"""Batched statevector simulation in PyTorch: the building blocks of the ``torch`` backend.

States are (B, 2^n) tensors; basis index bits read wire 0 as the most significant bit
(PennyLane's convention). Everything is differentiable with autograd and runs on the device and
dtype of its inputs (complex64/complex128 for circuits, float32/float64 for real circuits).

Why it is fast (docs/design/circuits.md#simulator-speed): gates are never applied one by one.
A layer of single-qubit gates is a tensor product, applied as a few dense blocks of ≤ 4 wires (one small matmul per
block, shared by the batch or one per sample when the inputs are folded in); a chain of CNOTs is
one permutation of amplitudes (an index gather); CZ / CRZ / IsingZZ layers are one diagonal;
the first layer acting on |0…0⟩ is a product state built in closed form; ⟨Z⟩ and ⟨ZZ⟩ are a
fixed ±1 sign matrix times |ψ|². Without re-uploading, the data-independent rest of the circuit
can also be built once per step as a 2^n×2^n matrix and applied to the batch as one matmul.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

MAX_BLOCK_WIRES = 4

# ----------------------------------------------------------------------------------------------
# Single-qubit gates (angles in radians) -> (..., 2, 2)


def _complex(real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
    return torch.complex(real, imag)


def rx(theta: torch.Tensor) -> torch.Tensor:
    """R_X(θ) = exp(-iθX/2): (...,) real -> (..., 2, 2) complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    z = torch.zeros_like(c)
    real = torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2)
    imag = torch.stack([torch.stack([z, -s], -1), torch.stack([-s, z], -1)], -2)
    return _complex(real, imag)


def ry_real(theta: torch.Tensor) -> torch.Tensor:
    """R_Y(θ) = exp(-iθY/2) as a real matrix: (...,) -> (..., 2, 2)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def ry(theta: torch.Tensor) -> torch.Tensor:
    """R_Y(θ): (...,) real -> (..., 2, 2) complex."""
    real = ry_real(theta)
    return _complex(real, torch.zeros_like(real))


def rz(theta: torch.Tensor) -> torch.Tensor:
    """R_Z(θ) = diag(e^{-iθ/2}, e^{iθ/2}): (...,) real -> (..., 2, 2) complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    z = torch.zeros_like(c)
    real = torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2)
    imag = torch.stack([torch.stack([-s, z], -1), torch.stack([z, s], -1)], -2)
    return _complex(real, imag)


EMBEDDING_GATES = {"X": rx, "Y": ry, "Z": rz}


def _rotation_tables() -> tuple[np.ndarray, np.ndarray]:
    # Half-angles (θ/2, (φ+ω)/2, (φ-ω)/2) from (φ, θ, ω); then the 8 real numbers of
    # Rot = [[e^{-i(φ+ω)/2} c, -e^{i(φ-ω)/2} s], [e^{-i(φ-ω)/2} s, e^{i(φ+ω)/2} c]] (c, s of θ/2)
    # as signed picks from the products of (cos, sin) of the half-angles.
    half = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.0], [0.0, 0.5, -0.5]])  # rows φ, θ, ω
    # trig = [cos t, cos p, cos m, sin t, sin p, sin m]; products trig_a * trig_b flattened a*6+b.
    ct, cp, cm, st, sp, sm = range(6)
    picks = np.zeros((36, 8))
    entries = [  # (output index, a, b, sign); outputs: 4 real parts then 4 imaginary parts
        (0, cp, ct, 1),
        (1, cm, st, -1),
        (2, cm, st, 1),
        (3, cp, ct, 1),
        (4, sp, ct, -1),
        (5, sm, st, -1),
        (6, sm, st, -1),
        (7, sp, ct, 1),
    ]
    for out, x, y, sign in entries:
        picks[x * 6 + y, out] = sign
    return half, picks


_HALF_ANGLES, _ROTATION_PICKS = _rotation_tables()


_ROTATION_CONSTANTS: dict[
    tuple[str, torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]
] = {}


def _rotation_constants(
    kind: str, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    key = (kind, dtype, device)
    if key not in _ROTATION_CONSTANTS:
        if kind == "ryrz":
            rows = _HALF_ANGLES[1:]  # rows θ, ω
        elif kind == "rot":
            rows = _HALF_ANGLES
        else:
            raise ValueError(f"unknown rotation kind {kind!r}")
        _ROTATION_CONSTANTS[key] = (
            torch.as_tensor(rows, dtype=dtype, device=device),
            torch.as_tensor(_ROTATION_PICKS, dtype=dtype, device=device),
        )
    return _ROTATION_CONSTANTS[key]


def rotation_gates(weights: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-wire rotation matrices from weights (..., 2 | 3) -> (..., 2, 2) complex.

    ``"ryrz"``: RZ(w1)·RY(w0); ``"rot"``: Rot(w0, w1, w2) = RZ(w2)·RY(w1)·RZ(w0). Built in
    closed form with a handful of kernels (this runs every step, and autograd pays per kernel).
    Every factor is R(t) = exp(-itP/2), so ∂gate/∂w_k is exactly ½·gate(w + π·e_k).
    """
    half, picks = _rotation_constants(kind, weights.dtype, weights.device)
    angles = weights @ half  # (..., 3): θ/2, (φ+ω)/2, (φ-ω)/2
    trig = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (..., 6)
    entries = (trig[..., :, None] * trig[..., None, :]).flatten(-2) @ picks  # (..., 8)
    return torch.complex(entries[..., :4], entries[..., 4:]).unflatten(-1, (2, 2))


# ----------------------------------------------------------------------------------------------
# Layers of single-qubit gates


def wire_blocks(n_qubits: int, max_block: int = MAX_BLOCK_WIRES) -> list[tuple[int, int]]:
    """Split wires 0..n-1 into contiguous near-equal blocks of ≤ max_block: [(start, size)]."""
    n_blocks = -(-n_qubits // max_block)
    sizes = [n_qubits // n_blocks + (1 if i < n_qubits % n_blocks else 0) for i in range(n_blocks)]
    blocks, start = [], 0
    for size in sizes:
        blocks.append((start, size))
        start += size
    return blocks


def kron_gates(gates: torch.Tensor) -> torch.Tensor:
    """Kronecker product of k single-qubit gates (..., k, 2, 2) -> (..., 2^k, 2^k), first wire major."""
    out = gates[..., 0, :, :]
    for j in range(1, gates.shape[-3]):
        g = gates[..., j, :, :]
        d = out.shape[-1]
        out = (out[..., :, None, :, None] * g[..., None, :, None, :]).reshape(
            *out.shape[:-2], 2 * d, 2 * d
        )
    return out


class KronHalves:
    """Transposed Kronecker products Kᵀ = Aᵀ ⊗ Bᵀ of layers of single-qubit gates, with weight derivatives.

    A is the product of the gates on wires < n//2, B of the rest. Each half is built by one
    GEMM that spreads every gate's 4 entries over the half's 4^w matrix entries (already in the
    transposed matrix layout), then w-1 elementwise products; equal halves go through together.
    This replaces :func:`kron_gates`' chain of small broadcasts (slow on CPU for 2-wide
    trailing dimensions, and one kernel per wire).

    Derivatives: given, for every gate, k gates D_{j,κ} with ∂g_j/∂w_κ = ½·D_{j,κ} (the
    π-shifted rotations, see :func:`rotation_gates`), the same GEMM and products also build the
    half with gate j replaced by D_{j,κ} (= 2·∂A/∂w_{j,κ}) for every (j, κ): a few more rows of
    a small GEMM. :meth:`weight_grads` then needs only ∂L/∂Aᵀ = (∂L/∂Kᵀ arranged as (Aᵀ
    entries, Bᵀ entries)) @ conj(Bᵀ) (likewise for B) and one batched matrix-vector product:
    ∂L/∂w = ½ Re Σ conj(∂L/∂Aᵀ) ⊙ (2·∂Aᵀ/∂w). Complex gradients use torch's convention.
    """

    def __init__(
        self, n_qubits: int, n_weights: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        n, h = n_qubits, n_qubits // 2
        self.n, self.k = n, n_weights
        halves = [(0, h), (h, n - h)] if h else [(0, n)]
        # Groups of equal-sized halves, processed together: [(first wire, halves, wires)].
        if len(halves) == 2 and halves[0][1] == halves[1][1]:
            self.groups = [(0, 2, h)]
        else:
            self.groups = [(first, 1, wires) for first, wires in halves]
        self.spread: dict[int, torch.Tensor] = {}
        self.variant_mask: dict[int, torch.Tensor] = {}
        for _, _, w in self.groups:
            d = 2**w
            m = np.arange(d * d)
            row, col = m // d, m % d  # entry m of Aᵀ: row ρ = column of A, column κ = row of A
            spread = np.zeros((4 * w, w * d * d))
            for j in range(w):
                shift = w - 1 - j
                c = 2 * ((col >> shift) & 1) + ((row >> shift) & 1)  # A[κ, ρ] uses g_j[κ_j, ρ_j]
                spread[4 * j + c, j * d * d + m] = 1.0
            self.spread[w] = torch.as_tensor(spread, dtype=dtype, device=device)
            # Variant v = 1 + j·k + κ replaces gate j; variant 0 is the half itself.
            mask = np.zeros((1 + w * n_weights, w, 1), dtype=bool)
            for j in range(w):
                mask[1 + j * n_weights : 1 + (j + 1) * n_weights, j] = True
            self.variant_mask[w] = torch.as_tensor(mask, device=device)

    def forward(
        self, gates: torch.Tensor, shifted: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Kᵀ (L, 2^n, 2^n) of gates (L, n, 2, 2), and what :meth:`weight_grads` needs.

        ``shifted`` (L, n, k, 2, 2): twice the gates' derivatives in their k weights, or None
        when no weight gradient is wanted.
        """
        layers = gates.shape[0]
        flat = gates.reshape(layers, self.n, 4)
        halves, derivatives = [], []
        for first, count, w in self.groups:
            d2 = 4**w
            wires = slice(first, first + count * w)
            part = flat[:, wires].reshape(layers, count, 1, w, 4)
            if shifted is not None:
                sub = shifted[:, wires].reshape(layers, count, w * self.k, 1, 4)
                sub = torch.cat([sub[:, :, :1], sub], dim=2)  # row 0 unused (variant 0)
                part = torch.where(self.variant_mask[w], sub, part)
            variants = part.shape[2]
            y = (part.reshape(layers, count, variants, 4 * w) @ self.spread[w]).view(
                layers, count, variants, w, d2
            )
            product = y[:, :, :, 0]
            for j in range(1, w):
                product = product * y[:, :, :, j]
            halves += list(product[:, :, 0].unbind(1))
            if shifted is not None:
                derivatives.append(product[:, :, 1:])  # (L, count, w·k, 4^w)
        if len(halves) == 1:
            dim = 2**self.n
            return halves[0].view(layers, dim, dim), halves + derivatives
        a, b = halves
        da, db = int(round(a.shape[-1] ** 0.5)), int(round(b.shape[-1] ** 0.5))
        kron = a.view(layers, da, 1, da, 1) * b.view(layers, 1, db, 1, db)
        return kron.reshape(layers, da * db, da * db), halves + derivatives

    def weight_grads(self, grad: torch.Tensor, saved: list[torch.Tensor]) -> torch.Tensor:
        """∂L/∂weights (L, n, k) from ∂L/∂Kᵀ (L, 2^n, 2^n) (``forward`` with ``shifted``)."""
        layers = grad.shape[0]
        n_halves = len(saved) - len(self.groups)
        halves, derivatives = saved[:n_halves], saved[n_halves:]
        if n_halves == 1:
            g_halves = [grad.reshape(layers, 1, -1)]
        else:
            a, b = halves
            da, db = int(round(a.shape[-1] ** 0.5)), int(round(b.shape[-1] ** 0.5))
            g = (
                grad.reshape(layers, da, db, da, db)
                .transpose(2, 3)
                .reshape(layers, da * da, db * db)
            )
            g_a = g @ b.conj()[:, :, None]  # (L, da², 1)
            g_b = (a.conj()[:, None, :] @ g).mT  # (L, db², 1)
            g_halves = (
                [torch.cat([g_a, g_b], dim=2).mT] if len(self.groups) == 1 else [g_a.mT, g_b.mT]
            )
        out = []
        for (_, count, w), g_half, derivative in zip(
            self.groups, g_halves, derivatives, strict=True
        ):
            # Re Σ conj(g)·D = Re(D @ conj(g)): (L, count, w·k, 4^w) @ (L, count, 4^w, 1).
            dots = (derivative @ g_half.conj()[..., None]).real
            out.append(dots.reshape(layers, count * w, self.k))
        return (out[0] if len(out) == 1 else torch.cat(out, dim=1)) * 0.5


_KRON_HALVES: dict[tuple[int, int, torch.device, torch.dtype], KronHalves] = {}


def kron_halves(
    n_qubits: int, n_weights: int, device: torch.device, dtype: torch.dtype
) -> KronHalves:
    """The cached :class:`KronHalves` for this register, weights per gate, device and complex dtype."""
    key = (n_qubits, n_weights, device, dtype)
    if key not in _KRON_HALVES:
        _KRON_HALVES[key] = KronHalves(n_qubits, n_weights, device, dtype)
    return _KRON_HALVES[key]


def apply_product_layer(
    state: torch.Tensor, gates: torch.Tensor, blocks: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """Apply ⊗_i gates_i to every state.

    state: (B, 2^n); gates: (n, 2, 2) shared by the batch, or (B, n, 2, 2) one set per sample.

    Blocks are applied from the last to the first. Each block acts on the trailing index bits
    and its output puts them in front: out[b, j, r] = Σ_i K[b, j, i] · state[b, r, i], a single
    (batched) GEMM on a transposed view, with no data movement; after every block has gone
    round once, the bit order is the original one again.
    """
    for start, size in reversed(blocks):
        block = kron_gates(gates[..., start : start + size, :, :])  # (d, d) | (B, d, d)
        state = _RotatingBlock.apply(state, block)
    return state


class _RotatingBlock(torch.autograd.Function):
    """out[b, j, r] = Σ_i K[b, j, i] · state[b, r, i]: (B, D), (d, d) | (B, d, d) -> (B, D).

    The backward is written out so that both GEMMs read their big operand through BLAS
    transpose / conjugate-transpose flags and write the state gradient directly in the input's
    layout, instead of autograd's conjugated and transposed copies of 2^n-wide tensors.
    """

    @staticmethod
    def forward(ctx, state: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        batch, dim = state.shape
        d = block.shape[-1]
        ctx.save_for_backward(state, block)
        return torch.matmul(block, state.reshape(batch, dim // d, d).mT).reshape(batch, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        state, block = ctx.saved_tensors
        batch, dim = state.shape
        d = block.shape[-1]
        grad = grad.reshape(batch, d, dim // d)
        grad_state = grad_block = None
        if ctx.needs_input_grad[0]:
            conj_block = block.conj().resolve_conj()
            if conj_block.dim() == 2:
                conj_block = conj_block.expand(batch, d, d)
            grad_state = torch.bmm(grad.mT, conj_block).reshape(
                batch, dim
            )  # (B, rest, d) = input layout
        if ctx.needs_input_grad[1]:
            grad_block = torch.matmul(state.reshape(batch, dim // d, d).mH, grad.mT).mT  # (B, d, d)
            if block.dim() == 2:
                grad_block = grad_block.sum(0)
        return grad_state, grad_block


# The same rotating blocks as plain tensor functions, for hand-written (adjoint-method) backwards
# that run outside autograd. ``block`` is (d, d) shared by the batch or (B, d, d) per sample.


def rotate_block(state: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """One rotating block: out[b, j, r] = Σ_i K[b, j, i] · state[b, r, i], (B, D) -> (B, D)."""
    batch, dim = state.shape
    d = block.shape[-1]
    return torch.matmul(block, state.reshape(batch, dim // d, d).mT).reshape(batch, dim)


def unrotate_block(state: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """Inverse (= adjoint, the block being unitary) of :func:`rotate_block`: (B, D) -> (B, D).

    ψ[b, r, i] = Σ_j out[b, j, r] · conj(K[b, j, i]); also the vector-Jacobian product of
    ``rotate_block`` with respect to the state, for any block.
    """
    batch, dim = state.shape
    d = block.shape[-1]
    return torch.matmul(state.reshape(batch, d, dim // d).mT, block.conj()).reshape(batch, dim)


def rotate_block_grad(
    grad_out: torch.Tensor, state_in: torch.Tensor, d: int, shared: bool
) -> torch.Tensor:
    """Gradient of :func:`rotate_block` with respect to the block (torch's complex convention).

    G[b, j, i] = Σ_r grad_out[b, j, r] · conj(state_in[b, r, i]): (B, d, d), summed over the
    batch to (d, d) when the block is ``shared``.
    """
    batch, dim = state_in.shape
    grad = torch.matmul(
        grad_out.reshape(batch, d, dim // d), state_in.reshape(batch, dim // d, d).conj()
    )
    return grad.sum(0) if shared else grad


def product_layer_blocks(
    gates: torch.Tensor, blocks: Sequence[tuple[int, int]]
) -> list[torch.Tensor]:
    """Kronecker blocks of one layer of single-qubit gates, in the order :func:`apply_blocks` applies them."""
    return [kron_gates(gates[..., start : start + size, :, :]) for start, size in reversed(blocks)]


def apply_blocks(state: torch.Tensor, krons: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply one layer's blocks from :func:`product_layer_blocks` (bit order restored at the end)."""
    for block in krons:
        state = rotate_block(state, block)
    return state


class _Gather(torch.autograd.Function):
    """state[:, index] whose backward is the inverse gather (not a scatter-add): index is a permutation."""

    @staticmethod
    def forward(
        ctx, state: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return state.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def permute_amplitudes(
    state: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor
) -> torch.Tensor:
    """state[:, index] for a permutation ``index`` with ``inverse = index.argsort()``: (B, D) -> (B, D)."""
    return _Gather.apply(state, index, inverse)


def product_state(vectors: torch.Tensor) -> torch.Tensor:
    """⊗_i v_i for per-wire single-qubit states (B, n, 2) -> (B, 2^n), wire 0 most significant.

    Neighbouring factors are multiplied pairwise, all pairs at once, so there are about log2(n)
    broadcast products and only the last one is 2^n wide.
    """
    batch = vectors.shape[0]
    factors = vectors  # (B, m, d): m factors of length d
    leftover = None  # an unpaired last factor (B, d'), multiplied in at the end
    while factors.shape[1] > 1:
        m, d = factors.shape[1], factors.shape[2]
        if m % 2:
            last = factors[:, -1]
            leftover = (
                last
                if leftover is None
                else (last[:, :, None] * leftover[:, None, :]).reshape(batch, -1)
            )
            factors = factors[:, :-1]
            m -= 1
        factors = (factors[:, 0::2, :, None] * factors[:, 1::2, None, :]).reshape(
            batch, m // 2, d * d
        )
    state = factors[:, 0]
    if leftover is not None:
        state = (state[:, :, None] * leftover[:, None, :]).reshape(batch, -1)
    return state


class AngleEmbedding:
    """R_Y(x)|0…0⟩ = ⊗_i (cos x_i/2, sin x_i/2) and its input derivative as a few small GEMMs.

    Broadcast products over small trailing dimensions (the pairwise :func:`product_state` on
    (B, n, 2)) run at a fraction of the memory bandwidth on CPU, and each op costs several µs
    of fixed overhead, so the state is built from two halves a (wires < h) and b (the rest):

    * forward: Y = [cos | sin] @ E expands every wire's factor to its half's 2^h (2^r)
      entries, a and b are products of those slices (tiny), and e = a ⊗ b is one outer product;
    * backward: ∂L/∂a = G b and ∂L/∂b = Gᵀ a with G = ∂L/∂e viewed (B, 2^h, 2^r) (two batched
      mat-vecs, one read of ∂L/∂e each), then inside each half ∂e/∂x_i = ½ J_i e (J_i: flip
      bit i, sign −1 where it was 0) gives ∂L/∂x_i = ½ ⟨∂L/∂a, J_i a⟩: the flipped copies
      ``[a | b] @ F`` and the tiled gradients ``[∂a | ∂b] @ T`` are (B, h·2^h + r·2^r) and
      summed per wire by one GEMM.

    No division (exact where cos or sin vanishes). Constants are 0/±1 matrices per device/dtype.
    """

    def __init__(self, n_qubits: int, device: torch.device, dtype: torch.dtype) -> None:
        n = n_qubits
        h, r = n // 2, n - n // 2
        self.n, self.h, self.r, self.dim = n, h, r, 2**n
        sizes = [(0, h), (h, r)]  # (first wire, wires) of each half
        cols = h * 2**h + r * 2**r
        halves = 2**h + 2**r
        expand = np.zeros((2 * n, cols))
        flip = np.zeros((halves, cols))
        tile = np.zeros((halves, cols))
        total = np.zeros((cols, n))
        self.slices: list[list[slice]] = []
        col, row = 0, 0  # column offset in Y, row offset of the half in [a | b]
        for first, wires in sizes:
            width = 2**wires
            k = np.arange(width)
            spans = []
            for j in range(wires):
                bit = (k >> (wires - 1 - j)) & 1
                span = slice(col, col + width)
                expand[first + j, span] = bit == 0
                expand[n + first + j, span] = bit == 1
                flip[row + (k ^ (1 << (wires - 1 - j))), col + k] = np.where(bit == 0, -1.0, 1.0)
                tile[row + k, col + k] = 1.0
                total[span, first + j] = 0.5
                spans.append(span)
                col += width
            self.slices.append(spans)
            row += width
        self.expand, self.flip, self.tile, self.total = (
            torch.as_tensor(m, device=device, dtype=dtype) for m in (expand, flip, tile, total)
        )

    def _halves(self, angles: torch.Tensor) -> list[torch.Tensor]:
        """The two half-register product states [a (B, 2^k), b (B, 2^(n-k))] of angles (B, n)."""
        half = angles * 0.5
        expanded = torch.cat([torch.cos(half), torch.sin(half)], dim=1) @ self.expand
        parts = []
        for spans in self.slices:
            if not spans:
                parts.append(torch.ones_like(angles[:, :1]))
                continue
            part = expanded[:, spans[0]]
            for span in spans[1:]:
                part = part * expanded[:, span]
            parts.append(part)
        return parts

    def forward(self, angles: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(state (B, 2^n) real, saved tensors for :meth:`backward`) of angles (B, n)."""
        parts = self._halves(angles)
        halves = torch.cat(parts, dim=1)  # [a | b]
        state = (parts[0][:, :, None] * parts[1][:, None, :]).view(-1, self.dim)
        return state, (halves, parts[0], parts[1])

    def state(self, angles: torch.Tensor) -> torch.Tensor:
        """The state (B, 2^n) of :meth:`forward` alone (inference: nothing kept for a backward)."""
        parts = self._halves(angles)
        return (parts[0][:, :, None] * parts[1][:, None, :]).view(-1, self.dim)

    def backward(self, grad: torch.Tensor, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """∂L/∂angles (B, n) from ∂L/∂state (B, 2^n)."""
        halves, a, b = saved
        batch = grad.shape[0]
        g = grad.view(batch, a.shape[1], b.shape[1])
        g_a = torch.bmm(g, b[:, :, None])[:, :, 0]
        g_b = torch.bmm(a[:, None, :], g)[:, 0]
        g_halves = torch.cat([g_a, g_b], dim=1)  # [∂L/∂a | ∂L/∂b]
        return ((halves @ self.flip) * (g_halves @ self.tile)) @ self.total


_EMBEDDINGS: dict[tuple[int, torch.device, torch.dtype], AngleEmbedding] = {}


def angle_embedding(n_qubits: int, device: torch.device, dtype: torch.dtype) -> AngleEmbedding:
    """The cached :class:`AngleEmbedding` for this register, device and (real) dtype."""
    key = (n_qubits, device, dtype)
    if key not in _EMBEDDINGS:
        _EMBEDDINGS[key] = AngleEmbedding(n_qubits, device, dtype)
    return _EMBEDDINGS[key]


_FLIP_TABLES: dict[tuple[int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _flip_table(
    n_qubits: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, sign) of length n·2^n: block i maps k to k with wire i's bit flipped, sign ½σ_i(k)."""
    key = (n_qubits, device, dtype)
    if key not in _FLIP_TABLES:
        k = np.arange(2**n_qubits)
        shifts = n_qubits - 1 - np.arange(n_qubits)
        index = (k[None, :] ^ (1 << shifts[:, None])).reshape(-1)
        sign = (((k[None, :] >> shifts[:, None]) & 1) - 0.5).reshape(-1)
        _FLIP_TABLES[key] = (
            torch.as_tensor(index, device=device),
            torch.as_tensor(sign, dtype=dtype, device=device),
        )
    return _FLIP_TABLES[key]


class _AngleProductState(torch.autograd.Function):
    """⊗_i (cos x_i/2, sin x_i/2) with a hand-written backward (one autograd node, few kernels).

    d/dx_i of wire i's factor is ½(−sin, cos): amplitude k's derivative is ½·σ_i(k)·e[k with
    bit i flipped], σ_i = −1 where bit i is 0 and +1 where it is 1. No division, so exact at
    angles where cos or sin vanish. All wires at once: one gather of the n flipped copies of the
    state, a sign, and one batched dot product with the incoming gradient.
    """

    @staticmethod
    def forward(ctx, angles: torch.Tensor) -> torch.Tensor:
        half = angles / 2
        state = product_state(torch.stack([torch.cos(half), torch.sin(half)], dim=-1))
        ctx.save_for_backward(state)
        return state

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (state,) = ctx.saved_tensors
        batch, dim = state.shape
        n = dim.bit_length() - 1
        index, sign = _flip_table(n, state.device, state.dtype)
        flipped = state.index_select(1, index).mul_(sign).view(batch, n, dim)
        return torch.bmm(flipped, grad.reshape(batch, dim, 1)).view(batch, n)


def angle_product_state(angles: torch.Tensor) -> torch.Tensor:
    """Real product state ⊗_i (cos x_i/2, sin x_i/2): angles (B, n) radians -> (B, 2^n).

    This is R_Y(x)|0…0⟩; R_X(x)|0…0⟩ is the same times the fixed phase (-i)^popcount(k).
    """
    return _AngleProductState.apply(angles)


# ----------------------------------------------------------------------------------------------
# Two-qubit layers as permutations and diagonals (numpy constants, built once per circuit)


def basis_bits(n_qubits: int) -> np.ndarray:
    """(2^n, n) array of 0/1: bit of wire w in basis state k (wire 0 most significant)."""
    k = np.arange(2**n_qubits)
    return ((k[:, None] >> (n_qubits - 1 - np.arange(n_qubits))[None, :]) & 1).astype(np.int64)


def cnot_gather_index(n_qubits: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Index g with (CNOT_pairs[-1]·…·CNOT_pairs[0] ψ)[k] = ψ[g[k]] (gates applied in pair order)."""
    index = np.arange(2**n_qubits)
    # ψ'(k) = ψ(c1(c2(…c_last(k)))): apply the last gate to the index first.
    for control, target in reversed(list(pairs)):
        cbit = (index >> (n_qubits - 1 - control)) & 1
        index = index ^ (cbit << (n_qubits - 1 - target))
    return index


def cz_diagonal(n_qubits: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Diagonal (±1) of the product of CZ gates on the pairs: (2^n,)."""
    bits = basis_bits(n_qubits)
    parity = np.zeros(2**n_qubits, dtype=np.int64)
    for a, b in pairs:
        parity += bits[:, a] * bits[:, b]
    return np.where(parity % 2 == 0, 1.0, -1.0)


def phase_coefficients(n_qubits: int, pairs: Sequence[tuple[int, int]], gate: str) -> np.ndarray:
    """C (n_pairs, 2^n) with diag(layer) = exp(-i/2 · φ @ C) for trainable angles φ (n_pairs,).

    CRZ(φ) on (c, t) multiplies |k⟩ by exp(-iφ z_t/2) when bit c is 1; IsingZZ(φ) by
    exp(-iφ z_c z_t/2), where z = 1 - 2·bit is the Z eigenvalue.
    """
    bits = basis_bits(n_qubits)
    z = 1 - 2 * bits
    rows = []
    for c, t in pairs:
        rows.append(bits[:, c] * z[:, t] if gate == "crz" else z[:, c] * z[:, t])
    return np.array(rows, dtype=np.float64).reshape(len(pairs), 2**n_qubits)


def z_signs(n_qubits: int) -> np.ndarray:
    """(2^n, n) eigenvalues of Z_i on each basis state: ⟨Z_i⟩ = |ψ|² @ signs."""
    return (1 - 2 * basis_bits(n_qubits)).astype(np.float64)


def zz_signs(n_qubits: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(2^n, n_pairs) eigenvalues of Z_iZ_j: ⟨Z_iZ_j⟩ = |ψ|² @ signs."""
    z = z_signs(n_qubits)
    return (
        np.stack([z[:, i] * z[:, j] for i, j in pairs], axis=1)
        if pairs
        else np.zeros((2**n_qubits, 0))
    )


# ----------------------------------------------------------------------------------------------
# Reduced single-qubit quantities for interpretability


def single_qubit_density_matrices(state: torch.Tensor) -> torch.Tensor:
    """Reduced density matrix of every wire: (B, 2^n) complex -> (B, n, 2, 2) (partial trace)."""
    batch, dim = state.shape
    n = dim.bit_length() - 1
    rhos = []
    for w in range(n):
        psi = state.reshape(batch, 2**w, 2, 2 ** (n - w - 1))
        rhos.append(torch.einsum("baic,bajc->bij", psi, psi.conj()))
    return torch.stack(rhos, dim=1)


def von_neumann_entropies(state: torch.Tensor) -> torch.Tensor:
    """Entanglement entropy of every wire with the rest, in nats: (B, 2^n) -> (B, n), 0..ln 2."""
    rho = single_qubit_density_matrices(state)
    eig = torch.linalg.eigvalsh(rho).clamp_min(0)
    return -torch.where(
        eig > 0,
        eig * torch.log(torch.where(eig > 0, eig, torch.ones_like(eig))),
        torch.zeros_like(eig),
    ).sum(-1)


def bloch_vectors(state: torch.Tensor) -> torch.Tensor:
    """(⟨X_i⟩, ⟨Y_i⟩, ⟨Z_i⟩) of every wire: (B, 2^n) complex -> (B, n, 3) real."""
    rho = single_qubit_density_matrices(state)
    off = rho[..., 0, 1]
    return torch.stack(
        [2 * off.real, -2 * off.imag, (rho[..., 0, 0] - rho[..., 1, 1]).real], dim=-1
    )
