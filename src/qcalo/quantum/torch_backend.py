"""The ``torch`` backend: a `CircuitSpec` simulated as a batched statevector in PyTorch.

See :mod:`qcalo.quantum.statevector` for the building blocks and why they are fast. Two
strategies, picked per call by :func:`choose_strategy` (or forced):

* ``"unitary"`` (no re-uploading only): the first layer on |0…0⟩ is a per-sample product state
  (closed form); everything after it is data-independent, built once per call as a 2^n×2^n
  matrix by running it on the identity, and applied to the batch as one matmul;
* ``"gates"``: layers applied to the batch as blocked dense single-qubit layers (the inputs
  folded in per sample when re-uploading), CNOT chains as gathers, diagonal entanglers as one
  elementwise product.

A trailing CNOT permutation is folded into the ±1 sign matrices (and a trailing diagonal dropped)
when no ``"state"`` measurement needs the final amplitudes.
"""

from __future__ import annotations

import numpy as np
import torch

from qcalo.quantum import statevector as sv
from qcalo.quantum.spec import CircuitSpec

STRATEGIES = ("auto", "unitary", "gates")


def choose_strategy(spec: CircuitSpec, batch: int) -> str:
    """Cheaper strategy for this circuit and batch size, from a rough cost model (ns, one core).

    Forward+backward per sample: the unitary path is one real GEMM against a (2^n, 2^(n+1))
    matrix, about 0.24·D² ns (D = 2^n; 4× that for the complex Z-embedding path), plus building
    the matrix (D rows through the gate path). The gate path costs about 0.8·D·Σ2^k ns per later
    layer of blocked gates and ~10·D ns per CNOT permutation (gathers are memory-bound), 2·D ns
    per diagonal entangler. Measured on CPU; at small batches both are overhead-bound.
    """
    if spec.reupload:
        return "gates"
    dim = spec.dim
    block_cost = sum(2**size for _, size in sv.wire_blocks(spec.n_qubits))
    entangler = (10 if spec.entangler_gate == "cnot" else 2) * dim if spec.entangler_pairs else 0
    per_sample_gates = 0.8 * dim * block_cost * (spec.n_layers - 1) + entangler * spec.n_layers
    per_sample_unitary = (0.24 if spec.embedding in ("X", "Y") else 0.96) * dim * dim
    unitary = batch * per_sample_unitary + dim * (per_sample_gates + 0.8 * dim * block_cost)
    gates = batch * per_sample_gates
    return "unitary" if unitary <= gates else "gates"


class _Constants:
    """Per-(device, dtype) tensors derived from the spec: gathers, diagonals, sign matrices."""

    def __init__(self, spec: CircuitSpec, device: torch.device, real_dtype: torch.dtype) -> None:
        n = spec.n_qubits
        pairs = spec.entangler_pairs
        kw = {"device": device, "dtype": real_dtype}
        self.gather = self.inverse_gather = None
        self.cz = self.phase_coeffs = None
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
        self.signs_doubled_after_gather = (
            torch.cat([self.signs_after_gather, self.signs_after_gather])
            if self.signs_after_gather is not None
            else None
        )
        self.blocks = sv.wire_blocks(n)
        popcount = sv.basis_bits(n).sum(1) % 4
        phases = np.array([1, -1j, -1, 1j])[popcount]
        complex_dtype = torch.complex64 if real_dtype == torch.float32 else torch.complex128
        self.x_phases = torch.as_tensor(phases, dtype=complex_dtype, device=device)


class TorchCircuit:
    """Compiled simulator of one `CircuitSpec`; caches constants per device and dtype."""

    def __init__(self, spec: CircuitSpec) -> None:
        self.spec = spec
        self._cache: dict[tuple[torch.device, torch.dtype], _Constants] = {}

    def constants(self, device: torch.device, real_dtype: torch.dtype) -> _Constants:
        key = (device, real_dtype)
        if key not in self._cache:
            self._cache[key] = _Constants(self.spec, device, real_dtype)
        return self._cache[key]

    # ------------------------------------------------------------------------------------------
    def _entangler(
        self,
        state: torch.Tensor,
        layer: int,
        const: _Constants,
        entangler_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        if const.gather is not None:
            return sv.permute_amplitudes(state, const.gather, const.inverse_gather)
        if const.cz is not None:
            return state * const.cz
        if const.phase_coeffs is not None:
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
        (all layers at once), applied as M @ Kᵀ; entanglers act on the rows like on a batch.
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
        return transfer

    def _amplitudes(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        strategy: str,
        final_entangler: bool,
    ) -> torch.Tensor:
        """Final amplitudes: complex (B, 2^n), or real (B, 2·2^n) = [Re ψ | Im ψ] on the real path."""
        spec = self.spec
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        if strategy == "auto":
            strategy = choose_strategy(spec, inputs.shape[0])
        if strategy not in ("unitary", "gates") or (strategy == "unitary" and spec.reupload):
            raise ValueError(
                f"strategy {strategy!r} not available for this circuit; expected one of {STRATEGIES} ('unitary' needs reupload=False)"
            )
        rotations = sv.rotation_gates(rotation_weights, spec.rotations)  # (L, n, 2, 2)
        n_layers = spec.n_layers

        def run(
            psi: torch.Tensor, first_layer: int, per_sample_embed: torch.Tensor | None
        ) -> torch.Tensor:
            for layer in range(n_layers):
                if layer >= first_layer:
                    gates = (
                        rotations[layer]
                        if per_sample_embed is None
                        else rotations[layer] @ per_sample_embed
                    )
                    psi = sv.apply_product_layer(psi, gates, const.blocks)
                if layer < n_layers - 1 or final_entangler:
                    psi = self._entangler(psi, layer, const, entangler_weights)
            return psi

        if strategy == "unitary" and spec.embedding in ("X", "Y"):
            # R_Y(x)|0⟩ = (cos x/2, sin x/2) and R_X(x)|0⟩ = (cos x/2, -i sin x/2): the embedded
            # product state is a real vector (B, 2^n) times a fixed phase (-i)^popcount(k) (X).
            # The whole circuit after the embedding is data-independent: one real GEMM with
            # [Re M | Im M], where row k of M is the circuit applied to |k⟩.
            embedded = sv.angle_product_state(inputs)  # (B, 2^n) real
            transfer = self._transfer(rotations, entangler_weights, const, 0, final_entangler)
            if spec.embedding == "X":
                transfer = transfer * const.x_phases[:, None]
            return embedded @ torch.cat([transfer.real, transfer.imag], dim=1)

        embed = sv.EMBEDDING_GATES[spec.embedding](inputs)  # (B, n, 2, 2)
        # Layer 0 acts on |0…0⟩: a product state of each wire's first column.
        first = rotations[0] @ embed[..., :, 0:1]  # (B, n, 2, 1)
        state = sv.product_state(first[..., 0])
        if strategy == "unitary":
            return state @ self._transfer(rotations, entangler_weights, const, 1, final_entangler)
        return run(state, 1, embed if spec.reupload else None)

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
        """
        amplitudes = self._amplitudes(inputs, rotation_weights, entangler_weights, strategy, True)
        if amplitudes.is_complex():
            return amplitudes
        dim = self.spec.dim
        return torch.complex(amplitudes[:, :dim], amplitudes[:, dim:])

    def features(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        *,
        strategy: str = "auto",
    ) -> torch.Tensor:
        """Measured features (B, n_outputs) real, in the order of ``spec.measurements``."""
        spec = self.spec
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        needs_state = "state" in spec.measurements
        # A trailing diagonal does not change |ψ|²; a trailing gather is folded into the readout.
        fold = not needs_state and bool(spec.entangler_pairs)
        amplitudes = self._amplitudes(
            inputs, rotation_weights, entangler_weights, strategy, not fold
        )
        gathered = fold and const.gather is not None
        split = not amplitudes.is_complex()  # [Re ψ | Im ψ] from the real path
        if split:
            squares = amplitudes * amplitudes
            probs = (
                squares[:, : spec.dim] + squares[:, spec.dim :]
                if "probs" in spec.measurements
                else None
            )
            state_features = amplitudes
        else:
            probs = amplitudes.real.square() + amplitudes.imag.square()
            state_features = (
                torch.cat([amplitudes.real, amplitudes.imag], dim=1) if needs_state else None
            )
        outputs = {}
        if const.signs is not None:
            # Σ_k (Re²+Im²)_k S_k = [Re² | Im²] @ [S; S]: no slicing on the real path.
            if split:
                expectations = squares @ (
                    const.signs_doubled_after_gather if gathered else const.signs_doubled
                )
            else:
                expectations = probs @ (const.signs_after_gather if gathered else const.signs)
            n = spec.n_qubits
            if "z" in spec.measurements:
                outputs["z"] = expectations[:, :n]
                outputs["zz"] = expectations[:, n:]
            else:
                outputs["zz"] = expectations
        if "probs" in spec.measurements:
            outputs["probs"] = (
                sv.permute_amplitudes(probs, const.gather, const.inverse_gather)
                if gathered
                else probs
            )
        if needs_state:
            outputs["state"] = state_features
        return torch.cat([outputs[m] for m in spec.measurements], dim=1)
