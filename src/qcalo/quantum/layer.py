"""`QuantumLayer`: a parametrised circuit as a `torch.nn.Module` (inputs as angles -> measured features)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from qcalo.errors import ConfigError, DataError
from qcalo.quantum.spec import CircuitSpec
from qcalo.quantum.torch_backend import STRATEGIES, TorchCircuit, ideal_flops

BACKENDS = ("torch", "pennylane")
_REAL_OF_COMPLEX = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def as_spec(spec: CircuitSpec | Mapping[str, Any]) -> CircuitSpec:
    """A `CircuitSpec` from itself or a mapping of its fields (ConfigError when invalid)."""
    if isinstance(spec, CircuitSpec):
        return spec
    if isinstance(spec, Mapping):
        return CircuitSpec.build(**spec)
    raise ConfigError(
        f"circuit spec of type {type(spec).__name__} is not understood; expected a CircuitSpec or a mapping of its fields"
    )


class QuantumLayer(nn.Module):
    """Inputs (B, n_qubits) radians -> measured features (B, n_outputs); also (n_qubits,) -> (n_outputs,).

    Input ``i`` is the embedding angle on wire ``i``. Trainable weights:
    ``rotation_weights`` (n_layers, n_qubits, 2 | 3) and, for CRZ/IsingZZ entanglers,
    ``entangler_weights`` (n_layers, n_pairs), initialised uniformly in [0, 2π) from
    ``generator`` (or a fresh one seeded with ``seed``; torch's global RNG when both are None).

    Backends:

    * ``"torch"`` (default): batched statevector simulation in PyTorch, differentiable w.r.t.
      weights and inputs, on the device of the module (move it with ``.to(device)``).
      ``dtype=torch.complex64`` (default) or ``torch.complex128``; the weights are stored in the
      matching real dtype, so ``.double()`` also switches to complex128. ``strategy`` forces
      ``"unitary"`` (one matrix for the data-independent circuit, no re-uploading),
      ``"adjoint"`` (gate layers with an adjoint-method backward: memory independent of depth)
      ``"gates"`` (autograd node by node; the one for higher-order derivatives) or ``"small"``
      (NumPy on the CPU, for small registers and batches: least per-call overhead), see
      :mod:`qcalo.quantum.torch_backend` and :mod:`qcalo.quantum.small`; ``"auto"`` times the
      strategies that fit in memory once per circuit, batch bucket, device and dtype and takes
      the fastest (:mod:`qcalo.quantum.autotune`).
      ``dedupe`` merges repeated input rows (e.g. a batch conditioned on a few distinct E_inc)
      so that each distinct row is simulated once: ``None`` (default) looks for repeats when
      the circuit costs ≥ ``DEDUPE_MIN_FLOPS`` per sample, ``True`` always, ``False`` never.
      Only inputs that need no gradient are merged (a merged row's input gradient could not be
      split back per row); the weights' gradients stay exact.
    * ``"pennylane"``: a QNode on ``device_name`` (any installed PennyLane device) with
      ``shots`` (None = exact), ``diff_method``, ``device_options`` (keyword arguments of
      ``qml.device``, e.g. ``{"seed": 1}`` for reproducible shots) and ``depolarizing`` (a
      depolarising channel of that probability after every gate on each of its wires; needs
      ``device_name="default.mixed"``); slow, for reference, noise studies and hardware runs.
      :func:`qcalo.quantum.on_pennylane` moves every circuit of a trained model there.

    The output has the input's floating dtype (the circuit runs in the layer's precision).
    A :class:`qcalo.quantum.StateCapture` attached from outside (a forward hook) records probe
    states every N training forward calls; the layer does not know it is watched.
    """

    def __init__(
        self,
        spec: CircuitSpec | Mapping[str, Any],
        backend: str = "torch",
        *,
        dtype: torch.dtype = torch.complex64,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        strategy: str = "auto",
        device_name: str = "default.qubit",
        shots: int | None = None,
        diff_method: str = "best",
        device_options: Mapping[str, Any] | None = None,
        dedupe: bool | None = None,
        depolarizing: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec = as_spec(spec)
        if backend not in BACKENDS:
            raise ConfigError(
                f"quantum layer backend {backend!r} is unknown; expected one of {', '.join(BACKENDS)}"
            )
        if dtype not in _REAL_OF_COMPLEX:
            raise ConfigError(
                f"quantum layer dtype {dtype} is not supported; expected torch.complex64 or torch.complex128"
            )
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"quantum layer strategy {strategy!r} is unknown; expected one of {', '.join(STRATEGIES)}"
            )
        if strategy == "unitary" and self.spec.reupload:
            raise ConfigError(
                "quantum layer strategy 'unitary' needs reupload=False; use 'gates' or 'auto'"
            )
        self.backend = backend
        self.strategy = strategy
        real = _REAL_OF_COMPLEX[dtype]
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.rotation_weights = nn.Parameter(
            _uniform_angles(self.spec.rotation_weight_shape, generator, real)
        )
        shape = self.spec.entangler_weight_shape
        self.entangler_weights = (
            nn.Parameter(_uniform_angles(shape, generator, real)) if shape is not None else None
        )
        self._torch_circuit = TorchCircuit(self.spec)
        self._pennylane = None
        if backend == "pennylane":
            from qcalo.quantum.pennylane_backend import PennyLaneCircuit

            self._pennylane = PennyLaneCircuit(
                self.spec,
                device_name,
                shots=shots,
                diff_method=diff_method,
                device_options=dict(device_options or {}),
                depolarizing=depolarizing,
            )
        elif shots is not None:
            raise ConfigError(
                "quantum layer: shots are only available with backend='pennylane'; the torch backend is exact"
            )
        elif depolarizing:
            raise ConfigError(
                "quantum layer: depolarizing noise needs backend='pennylane' with a mixed-state "
                "device (device_name='default.mixed'); the torch backend is noiseless"
            )
        if dedupe not in (None, True, False):
            raise ConfigError(
                f"quantum layer dedupe={dedupe!r} is invalid; expected None (auto), True or False"
            )
        self.dedupe = dedupe

    @property
    def n_outputs(self) -> int:
        """Features per sample (see `CircuitSpec.measurements`)."""
        return self.spec.n_outputs

    @property
    def n_inputs(self) -> int:
        return self.spec.n_qubits

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"n_qubits={s.n_qubits}, n_layers={s.n_layers}, embedding={s.embedding}, reupload={s.reupload}, "
            f"rotations={s.rotations}, entangler={s.entangler}/{s.entangler_gate}, measurements={list(s.measurements)}, "
            f"backend={self.backend}, n_outputs={self.n_outputs}"
        )

    def _prepare(self, inputs: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if not isinstance(inputs, torch.Tensor):
            inputs = torch.as_tensor(inputs)
        if inputs.dim() not in (1, 2) or inputs.shape[-1] != self.spec.n_qubits:
            raise DataError(
                f"quantum layer input has shape {tuple(inputs.shape)}; expected (batch, {self.spec.n_qubits}) or ({self.spec.n_qubits},) angles"
            )
        unbatched = inputs.dim() == 1
        if unbatched:
            inputs = inputs[None]
        return inputs.to(self.rotation_weights.dtype), unbatched

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_qubits) | (n_qubits,) angles in radians -> (B, n_outputs) | (n_outputs,)."""
        out_dtype = (
            inputs.dtype
            if isinstance(inputs, torch.Tensor) and inputs.is_floating_point()
            else self.rotation_weights.dtype
        )
        x, unbatched = self._prepare(inputs)
        if self._pennylane is not None:
            out = self._pennylane.features(x, self.rotation_weights, self.entangler_weights)
        else:
            merged = self._unique_rows(x)
            rows = x if merged is None else merged[0]
            out = self._torch_circuit.features(
                rows, self.rotation_weights, self.entangler_weights, strategy=self.strategy
            )
            if merged is not None:
                out = out.index_select(0, merged[1])
        out = out.to(out_dtype)
        return out[0] if unbatched else out

    def _unique_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(distinct rows, index of each row among them) when merging repeats saves work, else None."""
        batch = x.shape[0]
        if self.dedupe is False or batch < 2 or (x.requires_grad and torch.is_grad_enabled()):
            return None
        if self.dedupe is None and sum(ideal_flops(self.spec)) < DEDUPE_MIN_FLOPS:
            return None
        return unique_rows(x)

    def statevector(self, inputs: torch.Tensor) -> torch.Tensor:
        """Final statevector (B, 2^n) | (2^n,) complex, simulated exactly with the torch backend."""
        x, unbatched = self._prepare(inputs)
        state = self._torch_circuit.state(
            x, self.rotation_weights, self.entangler_weights, strategy=self.strategy
        )
        return state[0] if unbatched else state


#: ``dedupe=None`` looks for repeated rows only in circuits costing at least this many flops per
#: sample (`ideal_flops`): the look costs ~0.1 µs per row, under 5 % of such a circuit's step.
DEDUPE_MIN_FLOPS = 2**17


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(distinct rows U, inverse) with ``U[inverse] == x`` exactly, or None when no row repeats.

    Rows are grouped by a 1-D key (cheaper than ``torch.unique(dim=0)``), and the grouping is
    verified element by element; on a key collision the exact ``torch.unique(dim=0)`` decides.
    Rows with NaN are never merged.
    """
    batch = x.shape[0]
    flat = x.detach().reshape(batch, -1)
    if flat.shape[1] == 0:
        return None
    weights = torch.linspace(1.0, 2.0, flat.shape[1], dtype=torch.float64).tolist()
    # The key is accumulated column by column with elementwise ops, each the same IEEE operation
    # for every row, so equal rows get equal keys. A matrix-vector product (flat @ weights) does
    # not promise that: BLAS kernels round rows in a vector block and rows in the remainder
    # differently, which split equal rows into several groups on some CPUs.
    wide = flat.double()
    key = wide[:, 0] * weights[0]
    for column in range(1, wide.shape[1]):
        key = key + wide[:, column] * weights[column]
    keys, inverse = torch.unique(key, return_inverse=True)
    if keys.shape[0] == batch:
        return None
    first = torch.empty(keys.shape[0], dtype=torch.long, device=x.device)
    first.scatter_(0, inverse, torch.arange(batch, device=x.device))
    rows = flat.index_select(0, first)
    if not torch.equal(rows.index_select(0, inverse), flat):
        if torch.isnan(flat).any():
            return None
        rows, inverse = torch.unique(flat, dim=0, return_inverse=True)
        if rows.shape[0] == batch:
            return None
    return rows.reshape(-1, *x.shape[1:]).to(x.dtype), inverse


def _uniform_angles(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype
) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * math.pi)).to(dtype)
