"""The ``torch`` backend: a `CircuitSpec` simulated as a batched statevector in PyTorch.

See :mod:`qcalo.quantum.statevector` for the building blocks. Four strategies, picked per call
by measurement (:mod:`qcalo.quantum.autotune`; :func:`choose_strategy` is the cost model it
falls back on) or forced; the fourth, ``"small"`` (:mod:`qcalo.quantum.small`), runs small
registers and batches in NumPy on the CPU, where per-op overhead is what a step costs:

* ``"unitary"`` (no re-uploading only): the first layer on |0…0⟩ is a per-sample product state
  (closed form); everything after it is data-independent, built once per call as a 2^n×2^n
  matrix by running it on the identity, and applied to the batch as one GEMM. The whole circuit
  is one autograd node (:class:`_UnitaryFunction`): the backward is two GEMMs, the readout's
  derivative written out, and autograd only on the small front (product state) and matrix graphs.
* ``"adjoint"``: the circuit gate layer by gate layer (blocked dense single-qubit layers with the
  inputs folded in per sample when re-uploading, CNOT chains as gathers, diagonal entanglers as
  one elementwise product), as one autograd node (:class:`_AdjointFunction`) whose backward is
  the adjoint method: only the final state is kept; the backward walks the circuit in reverse,
  undoing each layer on the state and applying its adjoint to the cotangent, and contracts the
  two into each layer's gate gradient. Memory is a few (B, 2^n) states whatever the depth.
* ``"gates"``: the same layers recorded by autograd node by node (every intermediate state is
  kept: memory grows with depth). The reference for the two fused paths. Higher-order
  derivatives work on every strategy: under ``create_graph=True`` the fused backwards
  differentiate a recomputation on this path instead of their hand-written adjoint.

Without ``"state"`` in the measurements, the ``"gates"`` path folds a trailing CNOT permutation
into the ±1 sign matrices (and drops a trailing diagonal).

Inference (a call that records no graph: sampling, validation) with an X/Y embedding and no
re-uploading reuses the unitary path's matrix while the weights stay equal
(:meth:`TorchCircuit.frozen_matrix`), and ``"auto"`` takes that path up to
``FROZEN_UNITARY_MAX_QUBITS``; training steps on the CPU at small batches take ``"small"``
(``SMALL_MAX_BATCH``). Both thresholds are measured (``benchmarks/bench_circuit_inference.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qcalo.quantum import small
from qcalo.quantum import statevector as sv
from qcalo.quantum.spec import CircuitSpec

STRATEGIES = ("auto", "unitary", "adjoint", "gates", "small")
#: The unitary strategy keeps a 2^n×2^n matrix (and its gradient): at most this many qubits.
UNITARY_MAX_QUBITS = 12


#: Autograd's node-by-node path keeps every intermediate state; above this many bytes of them
#: "auto" takes the adjoint path, whose memory does not grow with depth.
AUTOGRAD_MEMORY_BUDGET = 256 * 2**20
#: Inference (no graph recorded) with an X/Y embedding and no re-uploading takes the unitary
#: path up to this many qubits: its matrix is cached while the weights do not change
#: (:meth:`TorchCircuit.frozen_matrix`), so a call is the product state, one real GEMM against
#: the (D, 2D) matrix and the readout. Measured (no-grad forward, 1 thread, 2 shared cores, load
#: 4.5-6.5; `benchmarks/results/circuits_inference.json`): fastest of unitary / gates / small at
#: every batch 1-1024 for 4, 6 and 8 qubits (8q: 0.09 vs 0.29 / 0.15 ms at batch 1, 3.0 vs 5.4
#: / 4.9 ms at 1024); at 10 qubits the gate paths win from batch 8 on.
FROZEN_UNITARY_MAX_QUBITS = 8
#: Up to this batch, an inference call on the cached matrix with ⟨Z⟩/⟨ZZ⟩ readouts runs in NumPy
#: on the CPU (the same product state, GEMM and readout; a NumPy call costs ~1 µs where a torch
#: op costs several): what a shower sampled at batch 1 pays 18 times in the hybrid twin. Measured
#: (whole QuantumLayer call, 1 thread, load ~10): 8 qubits 49 vs 67 µs at batch 1, 126 vs 139 at
#: 4, 211 vs 192 at 16; 6 qubits 39 vs 53 µs at batch 1, 52 vs 63 at 16, 85 vs 80 at 64.
NUMPY_INFERENCE_MAX_BATCH = 4
#: Training steps (a recorded graph) on the CPU with an X/Y embedding, no re-uploading and at most
#: ``SMALL_MAX_QUBITS`` qubits take the NumPy ``"small"`` path up to this batch (after rounding up
#: to a power of two). Measured, forward + backward, 2 layers, 1 thread
#: (`benchmarks/results/circuits_inference.json`): ``small`` fastest at every batch ≤ 64 for 4, 6
#: and 8 qubits (6q: 0.63 vs 0.98 ms for ``unitary`` at batch 1, 1.01 vs 1.18 at 64; 8q: 1.05 vs
#: 2.01 ms for ``gates`` at 1, 1.93 vs 3.02 at 64), ``unitary`` at 256 for 4 and 6 qubits. The
#: rule once proposed, batch·2^n ≤ 8192, was wrong at both ends (it took ``small`` for 4q at 256,
#: where ``unitary`` is faster, and not for 8q at 64, where ``small`` is).
SMALL_MAX_BATCH = 64
SMALL_MAX_QUBITS = 8


def autograd_state_bytes(spec: CircuitSpec, batch: int, itemsize: int = 8) -> int:
    """Rough bytes of intermediate states the ``"gates"`` path keeps for its backward.

    Each later layer's blocks, its entangler and the readout keep a (B, 2^n) state.
    """
    per_layer = len(sv.wire_blocks(spec.n_qubits)) + (1 if spec.entangler_pairs else 0)
    return batch * spec.dim * itemsize * (per_layer * spec.n_layers + 2)


def choose_strategy(
    spec: CircuitSpec, batch: int, itemsize: int = 8, grad: bool = True, cpu: bool = False
) -> str:
    """The strategy for this circuit and batch: a rough cost model (ns, one core) and a memory cap.

    ``grad=False`` (the call records no graph: sampling, validation): ``"unitary"`` for an X/Y
    embedding without re-uploading on at most ``FROZEN_UNITARY_MAX_QUBITS`` qubits (its matrix is
    cached between calls), else the training choice below. ``cpu`` (the tensors are on the CPU)
    with a graph: ``"small"`` for the same circuits on at most ``SMALL_MAX_QUBITS`` qubits at a
    batch of at most ``SMALL_MAX_BATCH`` (measured, see there), else the cost model below.

    Forward+backward: the gate paths cost about 0.8·D·Σ2^k ns per sample and later layer of
    blocked gates and ~10·D ns per CNOT permutation (gathers are memory-bound), 2·D ns per
    diagonal entangler, plus a fixed ~1 ms + 0.45 ms per later layer and block (kernel and
    autograd overhead). The unitary path with an X/Y embedding (:class:`_FusedUnitaryFunction`)
    costs 0.24·D² + 6·D ns per sample (three real GEMMs against a (D, 2D) matrix, and the
    embedding), plus building and differentiating the matrix: ~0.8 ms + 0.05 ms per layer of
    fixed overhead and 0.17·L·D³ ns of D×D complex GEMMs (measured on 2 shared cores, one
    thread, torch 2.13: it wins at every batch up to 6 qubits, and loses at small batches from
    8). With a Z embedding the unitary path is 0.96·D² ns per sample plus D rows through the
    gate path, and pays the same fixed overhead as the gate paths. Re-uploading circuits and
    registers above ``UNITARY_MAX_QUBITS`` never take the unitary path. Between the two gate
    paths, autograd's ``"gates"`` is ~1.25× faster (three block products per block instead of
    four) but keeps every intermediate state: ``"adjoint"`` when those would exceed
    ``AUTOGRAD_MEMORY_BUDGET`` (``itemsize``: bytes per amplitude, 8 for complex64).
    """
    if (
        not grad
        and not spec.reupload
        and spec.embedding in ("X", "Y")
        and spec.n_qubits <= FROZEN_UNITARY_MAX_QUBITS
    ):
        return "unitary"
    if (
        cpu
        and grad
        and not spec.reupload
        and spec.embedding in ("X", "Y")
        and spec.n_qubits <= SMALL_MAX_QUBITS
        and batch <= SMALL_MAX_BATCH
    ):
        return "small"
    gate_path = (
        "adjoint"
        if autograd_state_bytes(spec, batch, itemsize) > AUTOGRAD_MEMORY_BUDGET
        else "gates"
    )
    if spec.reupload or spec.n_qubits > UNITARY_MAX_QUBITS:
        return gate_path
    dim, layers = spec.dim, spec.n_layers
    blocks = sv.wire_blocks(spec.n_qubits)
    block_cost = sum(2**size for _, size in blocks)
    entangler = (10 if spec.entangler_gate == "cnot" else 2) * dim if spec.entangler_pairs else 0
    per_sample_gates = 0.8 * dim * block_cost * (layers - 1) + entangler * layers
    fixed_gates = 1.0e6 + 0.45e6 * (layers - 1) * len(blocks)
    if spec.embedding in ("X", "Y"):
        per_sample_unitary = 0.24 * dim * dim + 6 * dim
        matrix = 0.8e6 + 0.05e6 * layers + 0.17 * layers * dim**3
    else:
        per_sample_unitary = 0.96 * dim * dim
        matrix = fixed_gates + dim * (per_sample_gates + 0.8 * dim * block_cost)
    unitary = batch * per_sample_unitary + matrix
    gates = batch * per_sample_gates + fixed_gates
    return "unitary" if unitary <= gates else gate_path


def ideal_flops(spec: CircuitSpec) -> tuple[int, int]:
    """Real floating-point operations per sample of the ideal gate-by-gate simulation: (forward, backward).

    The reference count for "how far is a step from its floating-point bound": every layer's
    embedding and rotation on a wire fused into one dense 2×2 complex gate (14·D flops on D
    amplitudes: 4 complex products and 2 sums per amplitude pair); its adjoint-method backward
    undoes it on the state and applies its adjoint to the cotangent (2×14·D) and contracts the two
    into the 2×2 gradient (16·D). CNOT/CZ entanglers are permutations and sign flips (0); CRZ /
    IsingZZ layers are one complex diagonal (6·D forward, 3×6·D backward); the QFT is an FFT
    (5·D·log2 D each way); the readout |ψ|² (3·D), each ⟨Z⟩/⟨ZZ⟩ 2·D, its derivative the same
    plus 4·D. No closed-form shortcuts (e.g. layer 0 on |0…0⟩) are assumed.
    """
    n, dim, layers = spec.n_qubits, spec.dim, spec.n_layers
    forward = layers * n * 14 * dim
    backward = layers * n * 44 * dim
    if spec.entangler_weight_shape is not None:
        forward += layers * 6 * dim
        backward += layers * 18 * dim
    if spec.final_qft:
        forward += 5 * dim * n
        backward += 5 * dim * n
    n_expectations = sum(spec.measurement_size(m) for m in spec.measurements if m in ("z", "zz"))
    readout = 3 * dim + 2 * dim * n_expectations
    return forward + readout, backward + readout + 4 * dim


def ideal_bytes(spec: CircuitSpec, itemsize: int = 8) -> tuple[int, int]:
    """Bytes of memory traffic per sample of an ideal layer-fused simulation: (forward, backward).

    The bandwidth counterpart of :func:`ideal_flops`, for states too big for the caches (a big
    batch): single-qubit gates do ~7 flops per byte moved, so there memory bandwidth, not the
    flop rate, bounds a step. Ideal: every layer (embedding, rotations and entangler fused)
    reads and writes the state once (2·D·itemsize); its adjoint backward reads and writes the
    state and the cotangent once each (4·D·itemsize), the gradient contraction riding on those
    passes; the final QFT is one more pass each way; the readout reads the state (D) and its
    derivative writes the cotangent (D). ``itemsize``: bytes per amplitude (8 for complex64).
    """
    dim, layers = spec.dim, spec.n_layers
    passes_forward = layers + (1 if spec.final_qft else 0)
    forward = (2 * passes_forward + 1) * dim * itemsize
    backward = (4 * passes_forward + 1) * dim * itemsize
    return forward, backward


class _Constants:
    """Per-(device, dtype) tensors derived from the spec: gathers, diagonals, sign matrices."""

    def __init__(self, spec: CircuitSpec, device: torch.device, real_dtype: torch.dtype) -> None:
        n = spec.n_qubits
        pairs = spec.entangler_pairs
        kw: dict[str, Any] = {"device": device, "dtype": real_dtype}
        self.gather: torch.Tensor | None = None
        self.inverse_gather: torch.Tensor | None = None
        self.cz: torch.Tensor | None = None
        self.phase_coeffs: torch.Tensor | None = None
        if pairs and spec.entangler_gate == "cnot":
            index = sv.cnot_gather_index(n, pairs)
            self.gather = torch.as_tensor(index, device=device)
            self.inverse_gather = torch.as_tensor(index.argsort(), device=device)
        elif pairs and spec.entangler_gate == "cz":
            self.cz = torch.as_tensor(sv.cz_diagonal(n, pairs), **kw)
        elif pairs:
            self.phase_coeffs = torch.as_tensor(
                sv.phase_coefficients(n, pairs, spec.entangler_gate), **kw
            )
        signs = []
        if "z" in spec.measurements:
            signs.append(sv.z_signs(n))
        if "zz" in spec.measurements:
            signs.append(sv.zz_signs(n, spec.zz_pairs))
        self.signs = torch.as_tensor(np.concatenate(signs, axis=1), **kw) if signs else None
        self.signs_after_gather = (
            self.signs[self.inverse_gather]
            if self.signs is not None and self.gather is not None
            else None
        )
        # [S; S] for the real path's [Re² | Im²] @ [S; S] readout.
        self.signs_doubled = torch.cat([self.signs, self.signs]) if self.signs is not None else None
        # 2·[S; S]ᵀ contiguous: the split readout's backward is one GEMM and one in-place product.
        self.signs_doubled_grad = (
            (2 * self.signs_doubled).mT.contiguous() if self.signs_doubled is not None else None
        )
        #: Measurements are only ⟨Z⟩/⟨ZZ⟩, in the signs' column order (features = |ψ|² @ signs).
        self.expectations_only = tuple(spec.measurements) in (("z",), ("zz",), ("z", "zz"))
        self.signs_doubled_after_gather = (
            torch.cat([self.signs_after_gather, self.signs_after_gather])
            if self.signs_after_gather is not None
            else None
        )
        self.blocks = sv.wire_blocks(n)
        complex_dtype = torch.complex64 if real_dtype == torch.float32 else torch.complex128
        k = spec.rotation_weight_shape[-1]
        self.kron_halves = sv.kron_halves(n, k, device, complex_dtype)
        # [0; π·I]: the weights of each gate and of its π-shifted copies (exact derivatives).
        self.rotation_shifts = torch.cat([torch.zeros(1, k, **kw), torch.eye(k, **kw) * np.pi])
        popcount = sv.basis_bits(n).sum(1) % 4
        phases = np.array([1, -1j, -1, 1j])[popcount]
        self.x_phases = torch.as_tensor(phases, dtype=complex_dtype, device=device)
        # Column ranges of each measurement in the feature vector.
        self.slices: dict[str, slice] = spec.measurement_slices


# ----------------------------------------------------------------------------------------------
# Readouts of final amplitudes and their hand-written derivatives. Amplitudes are complex
# (B, 2^n), or real (B, 2·2^n) = [Re ψ | Im ψ] ("split", the unitary path's real GEMM output).
# Gradients with respect to complex amplitudes follow torch's convention ∂L/∂Re + i·∂L/∂Im.


def _expectation_parts(spec: CircuitSpec, expectations: torch.Tensor) -> dict[str, torch.Tensor]:
    n = spec.n_qubits
    if "z" in spec.measurements:
        return {"z": expectations[:, :n], "zz": expectations[:, n:]}
    return {"zz": expectations}


def _readout(
    spec: CircuitSpec, const: _Constants, amplitudes: torch.Tensor, split: bool
) -> torch.Tensor:
    """Measured features (B, n_outputs) of final amplitudes."""
    dim = spec.dim
    if split and const.expectations_only:
        assert const.signs_doubled is not None
        return amplitudes.square() @ const.signs_doubled
    outputs: dict[str, torch.Tensor] = {}
    if split:
        squares = amplitudes * amplitudes
        if "probs" in spec.measurements:
            outputs["probs"] = squares[:, :dim] + squares[:, dim:]
        if const.signs_doubled is not None:
            outputs.update(_expectation_parts(spec, squares @ const.signs_doubled))
        if "state" in spec.measurements:
            outputs["state"] = amplitudes
    else:
        if const.signs is not None or "probs" in spec.measurements:
            probs = torch.view_as_real(amplitudes).square().sum(-1)
            outputs["probs"] = probs
            if const.signs is not None:
                outputs.update(_expectation_parts(spec, probs @ const.signs))
        if "state" in spec.measurements:
            outputs["state"] = torch.cat([amplitudes.real, amplitudes.imag], dim=1)
    if len(spec.measurements) == 1:
        return outputs[spec.measurements[0]]
    return torch.cat([outputs[m] for m in spec.measurements], dim=1)


def _readout_backward(
    spec: CircuitSpec, const: _Constants, amplitudes: torch.Tensor, grad: torch.Tensor, split: bool
) -> torch.Tensor:
    """Gradient with respect to the amplitudes from the features' gradient (B, n_outputs)."""
    if split and const.expectations_only:
        # ∂L/∂[Re ψ | Im ψ] = 2·[Re ψ | Im ψ] ⊙ (g @ [S; S]ᵀ): one GEMM, one in-place product
        # (each pass over a (B, 2^(n+1)) tensor costs, and a fresh one more so).
        assert const.signs_doubled_grad is not None
        return (grad @ const.signs_doubled_grad).mul_(amplitudes)
    sl = const.slices
    weights = None  # ∂L/∂|ψ_k|², (B, D); tiled to (B, 2D) on the split path
    if const.signs is not None:
        parts = [grad[:, sl[m]] for m in ("z", "zz") if m in sl]
        g_exp = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        signs = const.signs_doubled if split else const.signs
        assert signs is not None
        weights = g_exp @ signs.mT
    if "probs" in sl:
        g_probs = grad[:, sl["probs"]]
        if split:
            g_probs = torch.cat([g_probs, g_probs], dim=1)
        weights = g_probs if weights is None else weights + g_probs
    result = None
    if weights is not None:
        result = amplitudes * (2 * weights)
    if "state" in sl:
        g_state = grad[:, sl["state"]]
        if not split:
            dim = spec.dim
            g_state = torch.complex(g_state[:, :dim], g_state[:, dim:])
        result = g_state if result is None else result + g_state
    assert result is not None
    return result


# ----------------------------------------------------------------------------------------------


class TorchCircuit:
    """Compiled simulator of one `CircuitSpec`; caches constants per device and dtype."""

    def __init__(self, spec: CircuitSpec) -> None:
        self.spec = spec
        self._cache: dict[tuple[torch.device, torch.dtype], _Constants] = {}
        # (device, dtype) -> (rotation weights, entangler weights, [Re M | Im M]) of the last
        # no-grad unitary call: see frozen_matrix.
        self._frozen: dict[
            tuple[torch.device, torch.dtype],
            tuple[torch.Tensor, torch.Tensor | None, torch.Tensor],
        ] = {}

    def constants(self, device: torch.device, real_dtype: torch.dtype) -> _Constants:
        key = (device, real_dtype)
        if key not in self._cache:
            self._cache[key] = _Constants(self.spec, device, real_dtype)
        return self._cache[key]

    def frozen_matrix(
        self,
        const: _Constants,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """[Re M | Im M] (D, 2D) of the circuit after an X/Y embedding, for calls that record no
        graph (inference: sampling, validation), built by :func:`_build_transfer` and reused
        while the weights stay equal.

        Kept for registers of at most ``FROZEN_UNITARY_MAX_QUBITS`` qubits (512 KB at 8 qubits in
        float32); bigger ones are built per call as before. The cache holds a copy of the
        weights it was built from and compares them element by element on every call (a few µs for a few dozen angles): any change of the weights (an
        optimiser step, ``load_state_dict``, an assignment through ``.data``) rebuilds M, so a
        stale matrix is never used. The matrix is the one the uncached no-grad call builds, so
        the features are bit-identical to it.
        """
        key = (rotation_weights.device, rotation_weights.dtype)
        hit = self._frozen.get(key)
        if (
            hit is not None
            and torch.equal(hit[0], rotation_weights)
            and (
                (hit[1] is None and entangler_weights is None)
                or (
                    hit[1] is not None
                    and entangler_weights is not None
                    and torch.equal(hit[1], entangler_weights)
                )
            )
        ):
            return hit[2]
        with torch.no_grad():
            transfer, _ = _build_transfer(self.spec, const, rotation_weights, entangler_weights)
            matrix = _real_transfer(transfer)
            if self.spec.n_qubits > FROZEN_UNITARY_MAX_QUBITS:
                return matrix  # a forced "unitary" on a big register: not kept (2^n x 2^(n+1))
            self._frozen[key] = (
                rotation_weights.detach().clone(),
                None if entangler_weights is None else entangler_weights.detach().clone(),
                matrix,
            )
        return matrix

    def resolve_strategy(
        self,
        strategy: str,
        batch: int,
        itemsize: int = 8,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        grad: bool = True,
    ) -> str:
        """The strategy a call runs: ``strategy`` itself, or for ``"auto"`` the measured choice.

        ``"auto"`` with a ``device`` and a real ``dtype`` asks :func:`qcalo.quantum.autotune.choose`
        (timed once per circuit, batch bucket, device, dtype and grad mode: ``grad`` says
        whether the call records a graph); without them, the cost model :func:`choose_strategy`.
        """
        if strategy == "auto":
            if device is None or dtype is None:
                return choose_strategy(
                    self.spec, batch, itemsize, grad
                )  # device unknown: no "small"
            from qcalo.quantum import autotune

            return autotune.choose(self, batch, device, dtype, grad)
        if strategy not in STRATEGIES or (strategy == "unitary" and self.spec.reupload):
            raise ValueError(
                f"strategy {strategy!r} not available for this circuit; expected one of {STRATEGIES} ('unitary' needs reupload=False)"
            )
        if strategy == "small" and device is not None and not small.available(device):
            raise ValueError(
                f"strategy 'small' runs in NumPy on the CPU; the tensors are on {device}"
            )
        return strategy

    # ------------------------------------------------------------------------------------------
    def _entangler(
        self,
        state: torch.Tensor,
        layer: int,
        const: _Constants,
        entangler_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        if const.gather is not None:
            assert const.inverse_gather is not None
            return sv.permute_amplitudes(state, const.gather, const.inverse_gather)
        if const.cz is not None:
            return state * const.cz
        if const.phase_coeffs is not None:
            assert entangler_weights is not None
            phase = (entangler_weights[layer] @ const.phase_coeffs) * -0.5
            return state * torch.complex(torch.cos(phase), torch.sin(phase))
        return state

    def _transfer(
        self,
        rotations: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        const: _Constants,
        first_layer: int,
        final_entangler: bool,
    ) -> torch.Tensor:
        """M (D, D) whose row k is the circuit (from layer ``first_layer``'s rotations on) applied to |k⟩.

        A row-vector state ψ goes to ψ @ M. Each rotation layer is one D×D Kronecker product
        (all layers at once), applied as M @ Kᵀ; entanglers and the final QFT act on the rows
        like on a batch.
        """
        n_layers = self.spec.n_layers
        krons = sv.kron_gates(rotations[first_layer:])  # (L', D, D)
        transfer = None
        for layer in range(n_layers):
            if layer >= first_layer:
                step = krons[layer - first_layer].transpose(0, 1)
                transfer = step if transfer is None else transfer @ step
            if layer < n_layers - 1 or final_entangler:
                if transfer is None:
                    transfer = torch.eye(
                        self.spec.dim, dtype=rotations.dtype, device=rotations.device
                    )
                transfer = self._entangler(transfer, layer, const, entangler_weights)
        if transfer is None:
            transfer = torch.eye(self.spec.dim, dtype=rotations.dtype, device=rotations.device)
        if self.spec.final_qft:
            transfer = torch.fft.ifft(transfer, dim=1, norm="ortho")
        return transfer

    # The "unitary" strategy ---------------------------------------------------------------------
    def _unitary_parts(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        const: _Constants,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(front, M): the final amplitudes are front @ M (see :func:`_real_transfer`).

        X/Y embedding: front is the real product state (B, D) of the embedding alone and M the
        complex (D, D) rest (the X embedding's phases folded in); Z embedding: front is the
        complex product state after layer 0's rotations and M the rest after it.
        """
        spec = self.spec
        rotations = sv.rotation_gates(rotation_weights, spec.rotations)  # (L, n, 2, 2)
        if spec.embedding in ("X", "Y"):
            # R_Y(x)|0⟩ = (cos x/2, sin x/2) and R_X(x)|0⟩ = (cos x/2, -i sin x/2): the embedded
            # product state is a real vector (B, 2^n) times a fixed phase (-i)^popcount(k) (X).
            embedded = sv.angle_product_state(inputs)
            transfer = self._transfer(rotations, entangler_weights, const, 0, True)
            if spec.embedding == "X":
                transfer = transfer * const.x_phases[:, None]
            return embedded, transfer
        embed = sv.EMBEDDING_GATES[spec.embedding](inputs)  # (B, n, 2, 2)
        first = rotations[0] @ embed[..., :, 0:1]  # (B, n, 2, 1): layer 0 acts on |0…0⟩
        return sv.product_state(first[..., 0]), self._transfer(
            rotations, entangler_weights, const, 1, True
        )

    # The "adjoint" strategy ---------------------------------------------------------------------
    def _layer_gates(
        self, inputs: torch.Tensor, rotation_weights: torch.Tensor
    ) -> list[torch.Tensor]:
        """Single-qubit gates of every layer: (B, n, 2, 2) where the inputs enter, else (n, 2, 2)."""
        spec = self.spec
        rotations = sv.rotation_gates(rotation_weights, spec.rotations)
        embed = sv.EMBEDDING_GATES[spec.embedding](inputs)
        return [
            rotations[layer] @ embed if layer == 0 or spec.reupload else rotations[layer]
            for layer in range(spec.n_layers)
        ]

    def _adjoint_state(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        const: _Constants,
    ) -> torch.Tensor:
        """Final statevector (B, D) complex, layer by layer (layer 0 on |0…0⟩ in closed form)."""
        gates = self._layer_gates(inputs, rotation_weights)
        state = sv.product_state(gates[0][..., :, 0])
        for layer in range(self.spec.n_layers):
            if layer > 0:
                state = sv.apply_blocks(state, sv.product_layer_blocks(gates[layer], const.blocks))
            state = self._entangler(state, layer, const, entangler_weights)
        if self.spec.final_qft:
            state = torch.fft.ifft(state, dim=1, norm="ortho")
        return state

    # The "gates" strategy (autograd, node by node) ---------------------------------------------
    def _gates_amplitudes(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        final_entangler: bool,
    ) -> torch.Tensor:
        spec = self.spec
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        rotations = sv.rotation_gates(rotation_weights, spec.rotations)  # (L, n, 2, 2)
        embed = sv.EMBEDDING_GATES[spec.embedding](inputs)  # (B, n, 2, 2)
        # Layer 0 acts on |0…0⟩: a product state of each wire's first column.
        first = rotations[0] @ embed[..., :, 0:1]  # (B, n, 2, 1)
        psi = sv.product_state(first[..., 0])
        n_layers = spec.n_layers
        for layer in range(n_layers):
            if layer >= 1:
                gates = rotations[layer] @ embed if spec.reupload else rotations[layer]
                psi = sv.apply_product_layer(psi, gates, const.blocks)
            if layer < n_layers - 1 or final_entangler:
                psi = self._entangler(psi, layer, const, entangler_weights)
        if spec.final_qft:
            psi = torch.fft.ifft(psi, dim=1, norm="ortho")
        return psi

    def _gates_features(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        spec = self.spec
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        needs_state = "state" in spec.measurements
        # A trailing diagonal does not change |ψ|²; a trailing gather is folded into the readout.
        fold = not needs_state and bool(spec.entangler_pairs) and not spec.final_qft
        amplitudes = self._gates_amplitudes(inputs, rotation_weights, entangler_weights, not fold)
        gathered = fold and const.gather is not None
        probs = amplitudes.real.square() + amplitudes.imag.square()
        outputs = {}
        if const.signs is not None:
            signs = const.signs_after_gather if gathered else const.signs
            assert signs is not None
            outputs.update(_expectation_parts(spec, probs @ signs))
        if "probs" in spec.measurements:
            if gathered:
                assert const.gather is not None and const.inverse_gather is not None
                probs = sv.permute_amplitudes(probs, const.gather, const.inverse_gather)
            outputs["probs"] = probs
        if needs_state:
            outputs["state"] = torch.cat([amplitudes.real, amplitudes.imag], dim=1)
        return torch.cat([outputs[m] for m in spec.measurements], dim=1)

    # ------------------------------------------------------------------------------------------
    def state(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        *,
        strategy: str = "auto",
    ) -> torch.Tensor:
        """Final statevector (B, 2^n) complex for inputs (B, n) radians.

        The dtype follows ``rotation_weights`` (float32 -> complex64, float64 -> complex128).
        Differentiable with autograd on every strategy (node by node: meant for inspection).
        """
        strategy = self.resolve_strategy(
            strategy,
            inputs.shape[0],
            2 * rotation_weights.element_size(),
            rotation_weights.device,
            rotation_weights.dtype,
            _records_graph(inputs, rotation_weights, entangler_weights),
        )
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        if strategy == "small":
            return small.state(self, inputs, rotation_weights, entangler_weights)
        if strategy == "gates":
            return self._gates_amplitudes(inputs, rotation_weights, entangler_weights, True)
        if strategy == "adjoint":
            return self._adjoint_state(inputs, rotation_weights, entangler_weights, const)
        front, transfer = self._unitary_parts(inputs, rotation_weights, entangler_weights, const)
        return front.to(transfer.dtype) @ transfer

    def features(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        *,
        strategy: str = "auto",
    ) -> torch.Tensor:
        """Measured features (B, n_outputs) real, in the order of ``spec.measurements``."""
        itemsize = 2 * rotation_weights.element_size()
        strategy = self.resolve_strategy(
            strategy,
            inputs.shape[0],
            itemsize,
            rotation_weights.device,
            rotation_weights.dtype,
            _records_graph(inputs, rotation_weights, entangler_weights),
        )
        if strategy == "gates":
            return self._gates_features(inputs, rotation_weights, entangler_weights)
        if strategy == "small":
            return small.features(self, inputs, rotation_weights, entangler_weights)
        tensors = (inputs, rotation_weights, entangler_weights)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            if strategy == "adjoint":
                function: Any = _AdjointFunction
            elif self.spec.embedding in ("X", "Y"):
                function = _FusedUnitaryFunction
            else:
                function = _UnitaryFunction
            return function.apply(inputs, rotation_weights, entangler_weights, self)
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        with torch.no_grad():
            if strategy == "adjoint":
                state = self._adjoint_state(inputs, rotation_weights, entangler_weights, const)
                return _readout(self.spec, const, state, split=False)
            if self.spec.embedding in ("X", "Y"):
                matrix = self.frozen_matrix(const, rotation_weights, entangler_weights)
                if (
                    inputs.shape[0] <= NUMPY_INFERENCE_MAX_BATCH
                    and const.expectations_only
                    and inputs.device.type == "cpu"
                    and inputs.dtype == matrix.dtype
                ):
                    assert const.signs_doubled is not None
                    return _numpy_frozen_features(
                        inputs, matrix, const.signs_doubled, self.spec.n_qubits
                    )
                embedding = sv.angle_embedding(self.spec.n_qubits, inputs.device, inputs.dtype)
                return _readout(self.spec, const, embedding.state(inputs) @ matrix, True)
            front, transfer = self._unitary_parts(
                inputs, rotation_weights, entangler_weights, const
            )
            split = not front.is_complex()
            amplitudes = front @ (_real_transfer(transfer) if split else transfer)
            return _readout(self.spec, const, amplitudes, split)


def _numpy_frozen_features(
    inputs: torch.Tensor, matrix: torch.Tensor, signs_doubled: torch.Tensor, n_qubits: int
) -> torch.Tensor:
    """⟨Z⟩/⟨ZZ⟩ features of the X/Y-embedded product state times the cached [Re M | Im M], in
    NumPy (small inference batches on the CPU; the torch path's function, other rounding)."""
    half = inputs.detach().numpy() * 0.5
    factors = np.stack([np.cos(half), np.sin(half)], axis=-1)  # (B, n, 2)
    batch = factors.shape[0]
    state = factors[:, 0]
    for wire in range(1, n_qubits):  # wire 0 most significant
        state = (state[:, :, None] * factors[:, None, wire]).reshape(batch, -1)
    amplitudes = state @ matrix.numpy()
    return torch.from_numpy((amplitudes * amplitudes) @ signs_doubled.numpy())


def _records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether a call on these tensors records an autograd graph (training, not inference)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _recorded_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Backward under ``create_graph=True``: differentiate a recorded recomputation.

    The fused backwards work on detached tensors, so their results would not carry the
    dependence on the inputs that a second derivative needs (the QINN's log-det gradient).
    Here the circuit is recomputed node by node (the ``"gates"`` path) on the saved inputs
    themselves and differentiated with ``create_graph=True``.
    """
    inputs, rotation_weights, entangler_weights = ctx.saved_tensors[:3]
    tensors = (inputs, rotation_weights, entangler_weights)
    wanted = [i for i, t in enumerate(tensors) if t is not None and ctx.needs_input_grad[i]]
    result: list[torch.Tensor | None] = [None, None, None, None]
    if not wanted:
        return tuple(result)
    with torch.enable_grad():
        features = ctx.circuit._gates_features(inputs, rotation_weights, entangler_weights)
        grads = torch.autograd.grad(
            features, [tensors[i] for i in wanted], grad, create_graph=True, allow_unused=True
        )
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g
    return tuple(result)


def _real_transfer(transfer: torch.Tensor) -> torch.Tensor:
    """[Re M | Im M] (D, 2D): a real front times it gives [Re ψ | Im ψ] in one real GEMM."""
    return torch.cat([transfer.real, transfer.imag], dim=1)


def _leaves(
    tensors: tuple[torch.Tensor | None, ...], needs: tuple[bool, ...]
) -> list[torch.Tensor | None]:
    """Detached copies of the inputs that record a fresh graph where a gradient is needed."""
    return [
        None if t is None else t.detach().requires_grad_(bool(need))
        for t, need in zip(tensors, needs, strict=False)
    ]


def _grads_of_leaves(
    outputs: list[torch.Tensor],
    grads: list[torch.Tensor],
    leaves: list[torch.Tensor | None],
    retain_graph: bool = False,
) -> list[torch.Tensor | None]:
    """torch.autograd.grad of the small recorded graphs into the leaves (None where not needed)."""
    wanted = [leaf for leaf in leaves if leaf is not None and leaf.requires_grad]
    result: list[torch.Tensor | None] = [None] * len(leaves)
    if not wanted or not outputs:
        return result
    found = iter(
        torch.autograd.grad(outputs, wanted, grads, allow_unused=True, retain_graph=retain_graph)
    )
    for i, leaf in enumerate(leaves):
        if leaf is not None and leaf.requires_grad:
            result[i] = next(found)
    return result


class _TransferTape:
    """What :func:`_build_transfer` keeps for :func:`_transfer_backward` (all (L, D, D) or smaller)."""

    def __init__(
        self,
        shifted: torch.Tensor | None,
        kron: list[torch.Tensor],
        steps: torch.Tensor,
        prefixes: list[torch.Tensor | None],
        phases: torch.Tensor | None,
    ) -> None:
        self.shifted, self.kron, self.steps = shifted, kron, steps
        self.prefixes, self.phases = prefixes, phases


def _build_transfer(
    spec: CircuitSpec,
    const: _Constants,
    rotation_weights: torch.Tensor,
    entangler_weights: torch.Tensor | None,
    keep_derivatives: bool = False,
) -> tuple[torch.Tensor, _TransferTape]:
    """M (D, D) of the whole circuit for an X/Y embedding (ψ_out = ψ_embedded @ M), no autograd.

    Every layer is one step S_l = K_lᵀ·E_l: the transposed Kronecker product of its rotation
    gates (:class:`sv.KronHalves`, all layers at once), with the entangler folded into its
    columns in one op for all layers (a column gather for CNOTs, a column scaling for
    CZ/CRZ/IsingZZ); M = S_0 S_1 … (L-1 small GEMMs), then the final QFT on the rows and the X
    embedding's fixed phases. About 15 kernels, where recording it for autograd cost ~40 nodes
    each way; :func:`_transfer_backward` is its hand-written derivative.

    ``keep_derivatives``: ∂gate/∂w_k = ½·gate(w + π·e_k) exactly (see :func:`sv.rotation_gates`),
    so the π-shifted gates (L, n, k, 2, 2) are built in the same call as the gates.
    """
    if keep_derivatives:
        sets = sv.rotation_gates(
            rotation_weights[:, :, None, :] + const.rotation_shifts, spec.rotations
        )
        gates, shifted = sets[:, :, 0], sets[:, :, 1:]
    else:
        gates, shifted = sv.rotation_gates(rotation_weights, spec.rotations), None
    steps, kron = const.kron_halves.forward(gates, shifted)  # K_lᵀ
    phases = None
    if const.gather is not None:
        steps = steps.index_select(2, const.gather)
    elif const.cz is not None:
        steps = steps * const.cz
    elif const.phase_coeffs is not None:
        assert entangler_weights is not None
        theta = (entangler_weights @ const.phase_coeffs) * -0.5  # (L, D)
        phases = torch.complex(torch.cos(theta), torch.sin(theta))
        steps = steps * phases[:, None, :]
    prefixes: list[torch.Tensor | None] = [None]
    transfer = steps[0]
    for layer in range(1, spec.n_layers):
        prefixes.append(transfer)
        transfer = transfer @ steps[layer]
    if spec.final_qft:
        transfer = torch.fft.ifft(transfer, dim=1, norm="ortho")
    if spec.embedding == "X":
        transfer = transfer * const.x_phases[:, None]
    return transfer, _TransferTape(shifted, kron, steps, prefixes, phases)


def _transfer_backward(
    spec: CircuitSpec,
    const: _Constants,
    tape: _TransferTape,
    grad: torch.Tensor,
    needs: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(∂L/∂rotation_weights, ∂L/∂entangler_weights) from ∂L/∂M of :func:`_build_transfer`.

    Reverse of the build: M = S_0 … S_{L-1} gives ∂L/∂S_l = (S_0…S_{l-1})ᴴ G (S_{l+1}…)ᴴ (two
    D×D GEMMs per layer); the entangler is undone on the columns (inverse gather, or the
    conjugate scaling, whose phases get Σ_rows Im(∂L/∂S · conj S)); the Kronecker products give
    the gates' gradients (:meth:`sv.KronHalves.gate_grads`), and ∂L/∂w_k = ½ Re Σ conj(∂L/∂g)
    ⊙ g(w + π·e_k). Everything is on (L, D, D) or smaller tensors: the cost does not depend
    on the batch.
    """
    if spec.embedding == "X":
        grad = grad * const.x_phases.conj()[:, None]
    if spec.final_qft:
        grad = torch.fft.fft(grad, dim=1, norm="ortho")
    steps = tape.steps
    grads: list[torch.Tensor] = []
    for layer in reversed(range(spec.n_layers)):
        prefix = tape.prefixes[layer]
        grads.append(grad if prefix is None else prefix.mH @ grad)
        if layer > 0:
            grad = grad @ steps[layer].mH
    g_steps = grads[0][None] if len(grads) == 1 else torch.stack(grads[::-1])
    g_entangler = None
    if const.gather is not None:
        assert const.inverse_gather is not None
        g_steps = g_steps.index_select(2, const.inverse_gather)
    elif const.cz is not None:
        g_steps = g_steps * const.cz
    elif tape.phases is not None:
        if needs[1]:
            # S = Kᵀ·diag(e^{iθ}): ∂L/∂θ_k = Σ_r Im(∂L/∂S_rk · conj(S_rk)), θ = -½ φ @ C.
            g_theta = (g_steps * steps.conj()).imag.sum(1)  # (L, D)
            assert const.phase_coeffs is not None
            g_entangler = (g_theta @ const.phase_coeffs.mT) * -0.5
        g_steps = g_steps * tape.phases.conj()[:, None, :]
    if not needs[0]:
        return None, g_entangler
    return const.kron_halves.weight_grads(g_steps, tape.kron), g_entangler


class _FusedUnitaryFunction(torch.autograd.Function):
    """The unitary strategy for X/Y embeddings with every derivative written out (no autograd).

    Forward: the embedded product state e = ⊗_i (cos x_i/2, sin x_i/2) (B, D) real, M built by
    :func:`_build_transfer`, amplitudes [Re ψ | Im ψ] = e @ [Re M | Im M] (one real GEMM), the
    readout. Backward: the readout's derivative, ∂L/∂e = G @ [Re M | Im M]ᵀ and
    ∂L/∂[Re M | Im M] = eᵀ G (the two batch-sized GEMMs), then the product state's derivative
    (:class:`sv.AngleEmbedding`) and M's (:func:`_transfer_backward`, cost independent of the
    batch). ~50 kernels per step (6q×2L), none recorded by autograd; on a shared CPU each
    costs 5-15 µs, so kernel count, and passes over (B, 2^(n+1)) tensors, are what is left.
    Under ``create_graph=True`` the backward differentiates the ``"gates"`` recomputation.
    """

    @staticmethod
    def forward(ctx, inputs, rotation_weights, entangler_weights, circuit):
        spec = circuit.spec
        const = circuit.constants(rotation_weights.device, rotation_weights.dtype)
        embedding = sv.angle_embedding(spec.n_qubits, inputs.device, inputs.dtype)
        front, embedded = embedding.forward(inputs)
        transfer, tape = _build_transfer(
            spec, const, rotation_weights, entangler_weights, ctx.needs_input_grad[1]
        )
        matrix = _real_transfer(transfer)
        amplitudes = front @ matrix
        ctx.circuit, ctx.const = circuit, const
        ctx.parts = (embedding, embedded, front, matrix, amplitudes, tape)
        ctx.save_for_backward(inputs, rotation_weights, entangler_weights)
        return _readout(spec, const, amplitudes, split=True)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return _recorded_backward(ctx, grad)
        inputs, rotation_weights, entangler_weights = ctx.saved_tensors
        embedding, embedded, front, matrix, amplitudes, tape = ctx.parts
        spec, const = ctx.circuit.spec, ctx.const
        needs = ctx.needs_input_grad
        g_amp = _readout_backward(spec, const, amplitudes, grad, split=True)
        g_inputs = g_rotations = g_entangler = None
        if needs[0]:
            g_inputs = embedding.backward(g_amp @ matrix.mT, embedded)
        if needs[1] or (needs[2] and entangler_weights is not None):
            g_matrix = front.mT @ g_amp  # (D, 2D): ∂L/∂Re M | ∂L/∂Im M
            dim = spec.dim
            g_transfer = torch.complex(g_matrix[:, :dim], g_matrix[:, dim:])
            g_rotations, g_entangler = _transfer_backward(
                spec, const, tape, g_transfer, (bool(needs[1]), bool(needs[2]))
            )
        return g_inputs, g_rotations, g_entangler, None


class _UnitaryFunction(torch.autograd.Function):
    """features(front(x, w) @ M(w, φ)) as one node: (inputs, rotation_weights, entangler_weights, circuit).

    The forward records autograd graphs only for the small front and matrix (see
    `TorchCircuit._unitary_parts`); the backward does the readout's derivative and the two big
    GEMMs by hand (g_front = g @ Mᴴ, g_M = frontᴴ @ g) and hands the rest to autograd.
    """

    @staticmethod
    def forward(ctx, inputs, rotation_weights, entangler_weights, circuit):
        const = circuit.constants(rotation_weights.device, rotation_weights.dtype)
        leaves = _leaves((inputs, rotation_weights, entangler_weights), ctx.needs_input_grad[:3])
        with torch.enable_grad():
            front, transfer = circuit._unitary_parts(*leaves, const)
        split = not front.is_complex()
        matrix = _real_transfer(transfer.detach()) if split else transfer.detach()
        amplitudes = front.detach() @ matrix
        ctx.circuit, ctx.const, ctx.split = circuit, const, split
        ctx.parts = (front, transfer, matrix, leaves, amplitudes)
        ctx.save_for_backward(inputs, rotation_weights, entangler_weights)
        return _readout(circuit.spec, const, amplitudes, split)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return _recorded_backward(ctx, grad)
        front, transfer, matrix, leaves, amplitudes = ctx.parts
        g_amp = _readout_backward(ctx.circuit.spec, ctx.const, amplitudes, grad, ctx.split)
        outputs, grads = [], []
        if front.requires_grad:
            outputs.append(front)
            grads.append(g_amp @ matrix.mH)
        if transfer.requires_grad:
            g_matrix = front.detach().mH @ g_amp
            if ctx.split:  # ∂L/∂Re M + i ∂L/∂Im M
                dim = g_matrix.shape[0]
                g_matrix = torch.complex(g_matrix[:, :dim], g_matrix[:, dim:])
            outputs.append(transfer)
            grads.append(g_matrix)
        # The small graphs live as long as this node: a retained outer graph can run again.
        return (*_grads_of_leaves(outputs, grads, leaves, retain_graph=True), None)


class _AdjointFunction(torch.autograd.Function):
    """features(circuit(x, w, φ)|0…0⟩) as one node with an adjoint-method backward.

    Saves only the final state. The backward recomputes the (small) per-layer gates with an
    autograd graph, then walks the circuit in reverse: each entangler and each Kronecker block
    is undone on the state (ψ_in = Uᴴ ψ_out) and applied as its adjoint to the cotangent
    (λ_in = Uᴴ λ_out); a block's gradient is λ_out ψ_inᴴ, a diagonal phase's Im(λ_out ψ̄_out).
    Layer 0 acts on |0…0⟩: its product state is rebuilt with autograd and given the cotangent.
    Memory: a few (B, 2^n) states plus the gates, independent of the depth.
    """

    @staticmethod
    def forward(ctx, inputs, rotation_weights, entangler_weights, circuit):
        const = circuit.constants(rotation_weights.device, rotation_weights.dtype)
        state = circuit._adjoint_state(inputs, rotation_weights, entangler_weights, const)
        ctx.save_for_backward(inputs, rotation_weights, entangler_weights, state)
        ctx.circuit, ctx.const = circuit, const
        return _readout(circuit.spec, const, state, split=False)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return _recorded_backward(ctx, grad)
        inputs, rotation_weights, entangler_weights, state = ctx.saved_tensors
        circuit, const = ctx.circuit, ctx.const
        spec = circuit.spec
        needs = ctx.needs_input_grad[:3]
        lam = _readout_backward(spec, const, state, grad, split=False)
        leaves = _leaves((inputs, rotation_weights, entangler_weights), needs)
        gates_need_grad = bool(needs[0] or needs[1])
        with torch.set_grad_enabled(gates_need_grad):
            gates = circuit._layer_gates(leaves[0], leaves[1])
        if spec.final_qft:
            state = torch.fft.fft(state, dim=1, norm="ortho")
            lam = torch.fft.fft(lam, dim=1, norm="ortho")
        g_phase = (
            torch.zeros_like(entangler_weights)
            if needs[2] and entangler_weights is not None
            else None
        )
        outputs, grads = [], []
        for layer in reversed(range(spec.n_layers)):
            # Entangler of this layer.
            if const.gather is not None:
                if layer > 0:
                    state = state.index_select(1, const.inverse_gather)
                lam = lam.index_select(1, const.inverse_gather)
            elif const.cz is not None:
                if layer > 0:
                    state = state * const.cz
                lam = lam * const.cz
            elif const.phase_coeffs is not None:
                phase = (entangler_weights[layer] @ const.phase_coeffs) * -0.5
                inverse = torch.complex(torch.cos(phase), -torch.sin(phase))
                if g_phase is not None:
                    # dL/dθ_k = Σ_b Im(λ_bk · conj(ψ_bk)) for ψ_k -> e^{iθ_k} ψ_k, θ = -φ·C/2.
                    dtheta = (lam * state.conj()).imag.sum(0)
                    g_phase[layer] = const.phase_coeffs @ dtheta * -0.5
                if layer > 0:
                    state = state * inverse
                lam = lam * inverse
            if layer == 0:
                break  # layer 0 on |0…0⟩ is a product state: its gradient through autograd below
            with torch.set_grad_enabled(gates_need_grad):
                krons = sv.product_layer_blocks(gates[layer], const.blocks)
            for block in reversed(krons):
                fixed = block.detach()
                state = sv.unrotate_block(state, fixed)
                if gates_need_grad:
                    outputs.append(block)
                    grads.append(
                        sv.rotate_block_grad(lam, state, fixed.shape[-1], fixed.dim() == 2)
                    )
                lam = sv.unrotate_block(lam, fixed)
        if gates_need_grad:
            with torch.enable_grad():
                outputs.append(sv.product_state(gates[0][..., :, 0]))
            grads.append(lam)
        g_inputs, g_rotations, _ = _grads_of_leaves(outputs, grads, leaves)
        return g_inputs, g_rotations, g_phase, None
