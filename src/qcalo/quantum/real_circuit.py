"""A real-gate layered circuit with an exact adjoint, for maps that need second derivatives.

``RealLayeredCircuit`` acts on ``n_wires`` wires (wire 0 the most significant bit, as in
PennyLane). Each of its ``n_layers`` layers is::

    RY(angles[:, l]) on wire ``input_wire``     per-event angles (B,) passed in (e.g. a condition)
    RY(θ_l,w) on every wire                     trainable
    CRY(φ_l,k) on the ring (0,1), (1,2), …, (n-1, 0)   trainable, zero at initialisation

Every gate is real, so U is a real orthogonal matrix and states stay real. The
condition-independent part of each layer is built once per call as one 2^n-square matrix from
the weights, so a batch costs one matrix product per layer plus the per-event rotation, and
the whole map is plain differentiable torch: second derivatives (d/dθ of ∂output/∂input, as the
QINN's log-det gradient needs) come from autograd. The fast statevector engine
(:mod:`qcalo.quantum.torch_backend`) is built for first derivatives of wide circuits; this one
is for a handful of wires (2^n ≤ a few hundred amplitudes). Tested against PennyLane
(``qml.RY``, ``qml.CRY``, ``qml.adjoint``).

Example::

    >>> import torch
    >>> circuit = RealLayeredCircuit(n_wires=3, n_layers=2, input_wire=2)
    >>> state = torch.zeros(4, 8, dtype=torch.float64); state[:, 0] = 1.0
    >>> angles = torch.rand(4, 2, dtype=torch.float64)
    >>> back = circuit(circuit(state, angles), angles, adjoint=True)
    >>> torch.allclose(back, state)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RealLayeredCircuit", "expect_z", "ry_matrix"]


def ry_matrix(theta: Tensor) -> Tensor:
    """RY(θ) = [[cos θ/2, −sin θ/2], [sin θ/2, cos θ/2]]; θ of any shape → (..., 2, 2)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _kron_all(factors: list[Tensor]) -> Tensor:
    out = factors[0]
    for factor in factors[1:]:
        out = torch.kron(out, factor)
    return out


def expect_z(state: Tensor, n_wires: int, wires: range | list[int]) -> Tensor:
    """⟨Z_w⟩ of a real state (B, 2^n) for each of ``wires`` → (B, len(wires))."""
    prob = (state**2).reshape(state.shape[0], *([2] * n_wires))
    out = []
    for wire in wires:
        marginal = prob.movedim(1 + wire, 1).reshape(prob.shape[0], 2, -1).sum(-1)
        out.append(marginal[:, 0] - marginal[:, 1])
    return torch.stack(out, dim=1)


class RealLayeredCircuit(nn.Module):
    """See the module docstring. Parameters: ``rotations`` (L, n) RY angles, ``entanglers``
    (L, n_pairs) CRY angles (radians)."""

    def __init__(
        self,
        n_wires: int,
        n_layers: int,
        input_wire: int,
        *,
        init_scale: float = 0.1,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if not 2 <= n_wires <= 12:
            raise ValueError(f"a real layered circuit takes 2..12 wires; got {n_wires}")
        if not 0 <= input_wire < n_wires:
            raise ValueError(f"input_wire {input_wire} is not one of the {n_wires} wires")
        self.n_wires, self.n_layers, self.input_wire = n_wires, n_layers, input_wire
        self.rotations = nn.Parameter(init_scale * torch.randn(n_layers, n_wires, dtype=dtype))
        self.entanglers = nn.Parameter(torch.zeros(n_layers, len(self.ring()), dtype=dtype))

    def ring(self) -> list[tuple[int, int]]:
        """(control, target) pairs of one layer's CRY ring."""
        n = self.n_wires
        pairs = [(i, i + 1) for i in range(n - 1)]
        return pairs + [(n - 1, 0)] if n > 2 else pairs

    def layer_matrices(self) -> Tensor:
        """RY on every wire then the CRY ring, per layer: (L, 2^n, 2^n) real orthogonal."""
        eye = torch.eye(2, dtype=self.rotations.dtype, device=self.rotations.device)
        p0, p1 = torch.diag(eye[0]), torch.diag(eye[1])
        out = []
        for layer in range(self.n_layers):
            matrix = _kron_all([ry_matrix(self.rotations[layer, w]) for w in range(self.n_wires)])
            for k, (control, target) in enumerate(self.ring()):
                idle = [eye] * self.n_wires
                active = list(idle)
                idle[control], active[control] = p0, p1
                active[target] = ry_matrix(self.entanglers[layer, k])
                matrix = (_kron_all(idle) + _kron_all(active)) @ matrix
            out.append(matrix)
        return torch.stack(out)

    def _input_rotation(self, state: Tensor, angles: Tensor) -> Tensor:
        """RY(angles) (B,) on ``input_wire`` of ``state`` (B, 2^n)."""
        batch = state.shape[0]
        high = 2**self.input_wire
        low = 2 ** (self.n_wires - self.input_wire - 1)
        view = state.reshape(batch, high, 2, low)
        gate = ry_matrix(angles)  # (B, 2, 2)
        return torch.einsum("bij,bhjl->bhil", gate, view).reshape(state.shape)

    def forward(self, state: Tensor, angles: Tensor, adjoint: bool = False) -> Tensor:
        """U|state⟩ (or U†|state⟩) for a real ``state`` (B, 2^n) and per-event input-wire angles
        ``angles`` (B, L)."""
        matrices = self.layer_matrices()
        if not adjoint:
            for layer in range(self.n_layers):
                state = self._input_rotation(state, angles[:, layer])
                state = state @ matrices[layer].T
            return state
        for layer in reversed(range(self.n_layers)):
            state = state @ matrices[layer]
            state = self._input_rotation(state, -angles[:, layer])
        return state
