"""Batched statevector simulation in PyTorch: the building blocks of the ``torch`` backend.

States are (B, 2^n) tensors; basis index bits read wire 0 as the most significant bit
(PennyLane's convention). Everything is differentiable with autograd and runs on the device and
dtype of its inputs (complex64/complex128 for circuits, float32/float64 for real circuits).

Why it is fast (DESIGN.md §4b): gates are never applied one by one. A layer of single-qubit
gates is a tensor product, applied as a few dense blocks of ≤ 4 wires (one small matmul per
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


def rotation_gates(weights: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-wire rotation matrices from weights (..., 2 | 3) -> (..., 2, 2) complex.

    ``"ryrz"``: RZ(w1)·RY(w0); ``"rot"``: Rot(w0, w1, w2) = RZ(w2)·RY(w1)·RZ(w0). Built in
    closed form with a handful of kernels (this runs every step, and autograd pays per kernel).
    """
    if kind == "ryrz":
        half = torch.as_tensor(
            _HALF_ANGLES[1:], dtype=weights.dtype, device=weights.device
        )  # rows θ, ω
    elif kind == "rot":
        half = torch.as_tensor(_HALF_ANGLES, dtype=weights.dtype, device=weights.device)
    else:
        raise ValueError(f"unknown rotation kind {kind!r}")
    picks = torch.as_tensor(_ROTATION_PICKS, dtype=weights.dtype, device=weights.device)
    angles = weights @ half  # (..., 3): θ/2, (φ+ω)/2, (φ-ω)/2
    trig = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (..., 6)
    entries = (trig[..., :, None] * trig[..., None, :]).flatten(-2) @ picks  # (..., 8)
    return torch.complex(entries[..., :4], entries[..., 4:]).unflatten(-1, (2, 2))


def rotation_gates_vjp(weights: torch.Tensor, kind: str, grad_gates: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`rotation_gates` w.r.t. its weights, written out: (..., 2, 2) -> (..., 2 | 3).

    The gate entries are ``(trig ⊗ trig) @ picks`` of the half-angles' (cos, sin), so the chain
    is three small matmuls: picks back to trig products, the symmetric product rule to trig,
    trig to half-angles to weights. Replaces ~20 autograd nodes on (L, n, 2, 2) tensors.
    """
    rows = _HALF_ANGLES[1:] if kind == "ryrz" else _HALF_ANGLES
    half = torch.as_tensor(rows, dtype=weights.dtype, device=weights.device)
    picks = torch.as_tensor(_ROTATION_PICKS, dtype=weights.dtype, device=weights.device)
    angles = weights @ half
    cos, sin = torch.cos(angles), torch.sin(angles)
    trig = torch.cat([cos, sin], dim=-1)  # (..., 6)
    grad_entries = torch.cat([grad_gates.real.flatten(-2), grad_gates.imag.flatten(-2)], dim=-1)
    grad_outer = (grad_entries @ picks.mT).unflatten(-1, (6, 6))
    grad_trig = ((grad_outer + grad_outer.mT) @ trig[..., None])[..., 0]
    grad_angles = grad_trig[..., 3:] * cos - grad_trig[..., :3] * sin
    return grad_angles @ half.mT


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
      entries, a and b are products of those slices (tiny), then z = [a | b] @ R = [a↑ | b↑]
      spreads both to 2^n and e = a↑ ⊙ b↑: one pass over the output;
    * backward: ∂L/∂a = (g ⊙ b↑) @ R_aᵀ, ∂L/∂b = (g ⊙ a↑) @ R_bᵀ (one (B, 2^(n+1)) product and
      one GEMM), then inside each half ∂e/∂x_i = ½ J_i e (J_i: flip bit i, sign −1 where it
      was 0) gives ∂L/∂x_i = ½ ⟨∂L/∂a, J_i a⟩: the flipped copies ``[a | b] @ F`` and the
      tiled gradients ``[∂a | ∂b] @ T`` are (B, h·2^h + r·2^r) and summed per wire by one GEMM.

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
        big = np.arange(2**n)
        spread = np.zeros((halves, 2 * 2**n))
        spread[big >> r, big] = 1.0
        spread[2**h + (big & (2**r - 1)), 2**n + big] = 1.0
        # ∂L/∂[a | b] from [g ⊙ a↑ | g ⊙ b↑]: the b↑-weighted half sums into a, and vice versa.
        back = np.zeros((2 * 2**n, halves))
        back[big, 2**h + (big & (2**r - 1))] = 1.0
        back[2**n + big, big >> r] = 1.0
        kw = {"device": device, "dtype": dtype}
        self.expand = torch.as_tensor(expand, **kw)
        self.flip = torch.as_tensor(flip, **kw)
        self.tile = torch.as_tensor(tile, **kw)
        self.total = torch.as_tensor(total, **kw)
        self.spread = torch.as_tensor(spread, **kw)
        self.back = torch.as_tensor(back, **kw)

    def forward(self, angles: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(state (B, 2^n) real, saved tensors for :meth:`backward`) of angles (B, n)."""
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
        halves = torch.cat(parts, dim=1)  # [a | b]
        spread = halves @ self.spread  # [a↑ | b↑]
        state = spread[:, : self.dim] * spread[:, self.dim :]
        return state, (halves, spread)

    def backward(self, grad: torch.Tensor, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """∂L/∂angles (B, n) from ∂L/∂state (B, 2^n)."""
        halves, spread = saved
        batch = grad.shape[0]
        weighted = (spread.view(batch, 2, self.dim) * grad[:, None, :]).view(batch, -1)
        g_halves = weighted @ self.back  # [∂L/∂a | ∂L/∂b]
        return ((halves @ self.flip) * (g_halves @ self.tile)) @ self.total


_EMBEDDINGS: dict[tuple[int, torch.device, torch.dtype], AngleEmbedding] = {}


def angle_embedding(n_qubits: int, device: torch.device, dtype: torch.dtype) -> AngleEmbedding:
    """The cached :class:`AngleEmbedding` for this register, device and (real) dtype."""
    key = (n_qubits, device, dtype)
    if key not in _EMBEDDINGS:
        _EMBEDDINGS[key] = AngleEmbedding(n_qubits, device, dtype)
    return _EMBEDDINGS[key]


_DIGIT_SELECTORS: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}


def _digit_selector(m: int, d: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(m, d^m, d) one-hot: [i, k, c] = 1 where base-d digit i of k (digit 0 most significant) is c."""
    key = (m, d, device, dtype)
    if key not in _DIGIT_SELECTORS:
        k = np.arange(d**m)
        digits = (k[None, :] // d ** (m - 1 - np.arange(m))[:, None]) % d  # (m, d^m)
        _DIGIT_SELECTORS[key] = torch.as_tensor(
            digits[:, :, None] == np.arange(d)[None, None, :], dtype=dtype, device=device
        )
    return _DIGIT_SELECTORS[key]


def _product_state_vjp_direct(grad: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """:func:`product_state_vjp` for a few factors: m products with factor i replaced by ones."""
    batch, m, d = vectors.shape
    if m == 1:
        return grad.reshape(batch, 1, d)
    eye = torch.eye(m, dtype=torch.bool, device=vectors.device)[None, :, :, None]
    others = vectors.conj()[:, None].expand(batch, m, m, d).masked_fill(eye, 1)
    products = product_state(others.reshape(batch * m, m, d)).view(batch, m, d**m)
    weighted = (products * grad[:, None, :]).transpose(0, 1)  # (m, B, d^m)
    selector = _digit_selector(m, d, vectors.device, vectors.dtype)
    return torch.bmm(weighted, selector).transpose(0, 1)


def product_state_vjp(grad: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Vector-Jacobian product of :func:`product_state`: grad (B, d^m), vectors (B, m, d) -> (B, m, d).

    g_i[c] = Σ_{k: digit i of k = c} grad[k] · conj(Π_{j≠i} v_j[k_j]) (torch's convention for
    complex tensors; plain products for real ones). The state is split into two halves,
    ψ = a ⊗ b: grad contracted with conj(b) is the gradient of a and vice versa (one pass over
    the 2^m-wide grad), and each half's own factors are found from its (small) gradient directly.
    Equal halves are processed as one batch. Exact where factors vanish (no division).
    """
    batch, m, d = vectors.shape
    if m <= 3:
        return _product_state_vjp_direct(grad, vectors)
    h = m // 2
    if 2 * h == m:
        halves = vectors.reshape(batch, 2, h, d).transpose(0, 1).reshape(2 * batch, h, d)
        parts = product_state(halves).conj().view(2, batch, d**h)
        g = grad.view(batch, d**h, d**h)
        g_left = (g * parts[1][:, None, :]).sum(2)
        g_right = (g * parts[0][:, :, None]).sum(1)
        inner = product_state_vjp(torch.cat([g_left, g_right]), halves)  # (2B, h, d)
        return inner.view(2, batch, h, d).transpose(0, 1).reshape(batch, m, d)
    left = product_state(vectors[:, :h]).conj()
    right = product_state(vectors[:, h:]).conj()
    g = grad.view(batch, d**h, d ** (m - h))
    g_left = (g * right[:, None, :]).sum(2)
    g_right = (g * left[:, :, None]).sum(1)
    return torch.cat(
        [product_state_vjp(g_left, vectors[:, :h]), product_state_vjp(g_right, vectors[:, h:])],
        dim=1,
    )


def kron_gates_vjp(gates: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Vector-Jacobian product of :func:`kron_gates`: gates (..., k, 2, 2), grad (..., 2^k, 2^k).

    K[(a_0…a_k-1), (b_0…b_k-1)] = Π_i g_i[a_i, b_i] is the product state of the flattened gates
    once K's row and column bits are interleaved: one permutation copy, then
    :func:`product_state_vjp`.
    """
    k = gates.shape[-3]
    lead = gates.shape[:-3]
    flat = gates.reshape(-1, k, 4)
    g = grad.reshape(flat.shape[0], *([2] * (2 * k)))
    order = [0] + [axis for i in range(k) for axis in (1 + i, 1 + k + i)]
    g = g.permute(order).reshape(flat.shape[0], 4**k)
    return product_state_vjp(g, flat).reshape(*lead, k, 2, 2)


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
