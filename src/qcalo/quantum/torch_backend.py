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
    """Cheaper strategy for this circuit and batch size (multiply-adds, with a per-op overhead).

    The unitary path costs D² per sample (D = 2^n) in one large matmul plus building the matrix
    (D samples through the gate path); the gate path costs about D·Σ2^k per later layer per
    sample in several smaller kernels, counted as twice as expensive per multiply-add.
    """
    if spec.reupload:
        return "gates"
    dim = spec.dim
    block_cost = sum(2**size for _, size in sv.wire_blocks(spec.n_qubits))
    per_sample_gates = 2 * (spec.n_layers - 1) * dim * block_cost + spec.n_layers * dim
    unitary = batch * dim * dim + dim * per_sample_gates
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
            self.phase_coeffs = torch.as_tensor(sv.phase_coefficients(n, pairs, spec.entangler_gate), **kw)
        signs = []
        if "z" in spec.measurements:
            signs.append(sv.z_signs(n))
        if "zz" in spec.measurements:
            signs.append(sv.zz_signs(n, spec.zz_pairs))
        self.signs = torch.as_tensor(np.concatenate(signs, axis=1), **kw) if signs else None
        self.signs_after_gather = self.signs[self.inverse_gather] if self.signs is not None and self.gather is not None else None
        self.blocks = sv.wire_blocks(n)


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
    def _entangler(self, state: torch.Tensor, layer: int, const: _Constants, entangler_weights: torch.Tensor | None) -> torch.Tensor:
        if const.gather is not None:
            return sv.permute_amplitudes(state, const.gather, const.inverse_gather)
        if const.cz is not None:
            return state * const.cz
        if const.phase_coeffs is not None:
            phase = (entangler_weights[layer] @ const.phase_coeffs) * -0.5
            return state * torch.complex(torch.cos(phase), torch.sin(phase))
        return state

    def state(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
        *,
        strategy: str = "auto",
        final_entangler: bool = True,
    ) -> torch.Tensor:
        """Final statevector (B, 2^n) complex for inputs (B, n) radians.

        The dtype follows ``rotation_weights`` (float32 -> complex64, float64 -> complex128).
        With ``final_entangler=False`` the last entangler layer is left out (the caller folds it
        into the readout).
        """
        spec = self.spec
        const = self.constants(rotation_weights.device, rotation_weights.dtype)
        if strategy == "auto":
            strategy = choose_strategy(spec, inputs.shape[0])
        if strategy not in ("unitary", "gates") or (strategy == "unitary" and spec.reupload):
            raise ValueError(f"strategy {strategy!r} not available for this circuit; expected one of {STRATEGIES} ('unitary' needs reupload=False)")
        rotations = sv.rotation_gates(rotation_weights, spec.rotations)  # (L, n, 2, 2)
        embed = sv.EMBEDDING_GATES[spec.embedding](inputs)  # (B, n, 2, 2)
        # Layer 0 acts on |0…0⟩: a product state of each wire's first column.
        first = rotations[0] @ embed[..., :, 0:1]  # (B, n, 2, 1)
        state = sv.product_state(first[..., 0])
        n_layers = spec.n_layers

        def rest(psi: torch.Tensor, per_sample_embed: torch.Tensor | None) -> torch.Tensor:
            for layer in range(n_layers):
                if layer > 0:
                    gates = rotations[layer] if per_sample_embed is None else rotations[layer] @ per_sample_embed
                    psi = sv.apply_product_layer(psi, gates, const.blocks)
                if layer < n_layers - 1 or final_entangler:
                    psi = self._entangler(psi, layer, const, entangler_weights)
            return psi

        if strategy == "unitary":
            eye = torch.eye(spec.dim, dtype=state.dtype, device=state.device)
            transfer = rest(eye, None)  # row k = U e_k, so ψ_out = ψ_in @ transfer
            return state @ transfer
        return rest(state, embed if spec.reupload else None)

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
        state = self.state(inputs, rotation_weights, entangler_weights, strategy=strategy, final_entangler=not fold)
        probs = state.real.square() + state.imag.square()
        gathered = fold and const.gather is not None
        outputs = {}
        if const.signs is not None:
            signs = const.signs_after_gather if gathered else const.signs
            expectations = probs @ signs
            n = spec.n_qubits
            if "z" in spec.measurements:
                outputs["z"] = expectations[:, :n]
                outputs["zz"] = expectations[:, n:]
            else:
                outputs["zz"] = expectations
        if "probs" in spec.measurements:
            outputs["probs"] = sv.permute_amplitudes(probs, const.gather, const.inverse_gather) if gathered else probs
        if needs_state:
            outputs["state"] = torch.cat([state.real, state.imag], dim=1)
        return torch.cat([outputs[m] for m in spec.measurements], dim=1)
