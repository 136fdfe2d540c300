"""`OrthogonalCircuit`: a circuit of real gates (RY, CNOT/CZ) as a learned orthogonal mixing layer.

Every gate of the circuit is a real matrix, so the circuit is a real orthogonal 2^n×2^n matrix
O(θ). Applied to feature vectors of length 2^n it is an exact, volume-preserving bijection
(inverse Oᵀ, log|det| = 0) with n·L parameters — docs/design/models.md#quantum-mixer.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import nn

from qcalo.errors import ConfigError, DataError
from qcalo.quantum import statevector as sv

ENTANGLERS = ("none", "linear", "ring", "all_to_all")
GATES = ("cnot", "cz")


def entangler_pairs(n_qubits: int, entangler: str) -> list[tuple[int, int]]:
    """(control, target) pairs of one entangler layer, as in `CircuitSpec.entangler_pairs`."""
    if entangler == "none" or n_qubits < 2:
        return []
    linear = [(i, i + 1) for i in range(n_qubits - 1)]
    if entangler == "linear":
        return linear
    if entangler == "ring":
        return linear + ([(n_qubits - 1, 0)] if n_qubits > 2 else [])
    return list(combinations(range(n_qubits), 2))


class OrthogonalCircuit(nn.Module):
    """y = O(θ) x for feature vectors x of length 2^n_qubits; exact inverse x = O(θ)ᵀ y.

    Circuit, per layer l: RY(θ[l, i]) on every wire i, then the entangler (CNOT or CZ on the
    pattern's pairs, in order). Wire 0 is the most significant bit of the feature index, as in
    PennyLane, so ``matrix()`` equals ``qml.matrix`` of the same circuit.

    Initialisation: θ ~ Uniform(-init_range, init_range) with ``init_range = π`` by default, from
    ``generator`` (or one seeded with ``seed``; torch's global RNG when both are None). That
    makes O(θ) a dense, well-mixing random rotation from the start (like Glow's random
    orthogonal 1×1-conv initialisation) rather than the identity or a bare permutation; pass a
    small ``init_range`` to start close to the entangler's permutation instead.

    Shapes: ``forward(x)``: (B, 2^n) -> (B, 2^n) = x @ Oᵀ; ``inverse(y)``: y @ O; ``matrix()``:
    (2^n, 2^n) in the weights' dtype (float32 unless ``dtype`` says otherwise). Inputs are cast to
    the weights' dtype and the result back to the input's dtype.
    """

    _gather: torch.Tensor | None
    _inverse_gather: torch.Tensor | None
    _cz_signs: torch.Tensor | None

    def __init__(
        self,
        n_qubits: int,
        n_layers: int,
        entangler: str = "linear",
        entangler_gate: str = "cnot",
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        init_range: float = math.pi,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(n_qubits, int) or not 1 <= n_qubits <= 20:
            raise ConfigError(
                f"orthogonal circuit n_qubits={n_qubits!r} is invalid; expected an integer in 1..20"
            )
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ConfigError(
                f"orthogonal circuit n_layers={n_layers!r} is invalid; expected an integer ≥ 1"
            )
        if entangler not in ENTANGLERS:
            raise ConfigError(
                f"orthogonal circuit entangler {entangler!r} is unknown; expected one of {', '.join(ENTANGLERS)}"
            )
        if entangler_gate not in GATES:
            raise ConfigError(
                f"orthogonal circuit entangler_gate {entangler_gate!r} is not a real gate; expected one of {', '.join(GATES)}"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(
                f"orthogonal circuit dtype {dtype} is not supported; expected torch.float32 or torch.float64"
            )
        self.n_qubits = n_qubits
        self.n_layers = n_layers
        self.entangler = entangler
        self.entangler_gate = entangler_gate
        self.pairs = entangler_pairs(n_qubits, entangler)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        angles = (
            torch.rand((n_layers, n_qubits), generator=generator, dtype=torch.float64) * 2 - 1
        ) * init_range
        self.weights = nn.Parameter(angles.to(dtype))
        self._blocks = sv.wire_blocks(n_qubits)
        gather = (
            torch.as_tensor(sv.cnot_gather_index(n_qubits, self.pairs))
            if entangler_gate == "cnot" and self.pairs
            else None
        )
        signs = (
            torch.as_tensor(sv.cz_diagonal(n_qubits, self.pairs), dtype=dtype)
            if entangler_gate == "cz" and self.pairs
            else None
        )
        self.register_buffer("_gather", gather, persistent=False)
        self.register_buffer(
            "_inverse_gather", gather.argsort() if gather is not None else None, persistent=False
        )
        self.register_buffer("_cz_signs", signs, persistent=False)

    @property
    def n_features(self) -> int:
        """2^n_qubits: the length of the vectors the circuit mixes."""
        return 2**self.n_qubits

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, entangler={self.entangler}/{self.entangler_gate}"

    def _check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise DataError(
                f"orthogonal circuit {name} has shape {tuple(x.shape)}; expected (batch, {self.n_features})"
            )
        return x.to(self.weights.dtype)

    def _entangle(self, state: torch.Tensor, inverse: bool) -> torch.Tensor:
        if self._gather is not None and self._inverse_gather is not None:
            if inverse:
                return sv.permute_amplitudes(state, self._inverse_gather, self._gather)
            return sv.permute_amplitudes(state, self._gather, self._inverse_gather)
        if self._cz_signs is not None:
            return state * self._cz_signs.to(state.dtype)
        return state

    def _run(self, state: torch.Tensor, inverse: bool) -> torch.Tensor:
        gates = sv.ry_real(-self.weights if inverse else self.weights)  # (L, n, 2, 2)
        layers = range(self.n_layers - 1, -1, -1) if inverse else range(self.n_layers)
        for layer in layers:
            if inverse:
                state = self._entangle(state, inverse=True)
                state = sv.apply_product_layer(state, gates[layer], self._blocks)
            else:
                state = sv.apply_product_layer(state, gates[layer], self._blocks)
                state = self._entangle(state, inverse=False)
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ O(θ)ᵀ, i.e. y_b = O(θ) x_b: (B, 2^n) -> (B, 2^n)."""
        return self._run(self._check(x, "input"), inverse=False).to(x.dtype)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """x = y @ O(θ), i.e. x_b = O(θ)ᵀ y_b: (B, 2^n) -> (B, 2^n)."""
        return self._run(self._check(y, "input"), inverse=True).to(y.dtype)

    def matrix(self) -> torch.Tensor:
        """O(θ): (2^n, 2^n) real, in the weights' dtype and on their device."""
        eye = torch.eye(self.n_features, dtype=self.weights.dtype, device=self.weights.device)
        return self._run(eye, inverse=False).T  # row k of the result is O e_k

    def log_abs_det(self, x: torch.Tensor) -> torch.Tensor:
        """log|det O| = 0 for every sample: (B, 2^n) -> (B,) zeros."""
        return x.new_zeros(x.shape[0])
