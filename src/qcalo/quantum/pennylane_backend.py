"""The ``pennylane`` backend: a `CircuitSpec` compiled to a PennyLane QNode (torch interface).

This is the reference the torch backend is tested against, and the way to run a spec on any
PennyLane device (``default.qubit``, ``lightning.qubit``, hardware plugins) with finite shots.
The gates are written out one by one from the spec, independently of the torch backend's
fused layers. Batches use PennyLane parameter broadcasting.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from qcalo.errors import ConfigError
from qcalo.quantum.spec import CircuitSpec

DIFF_METHODS = (
    "best",
    "backprop",
    "adjoint",
    "parameter-shift",
    "finite-diff",
    "spsa",
    "hadamard",
    "device",
)


def circuit_function(spec: CircuitSpec, depolarizing: float = 0.0):
    """The quantum function of ``spec``: f(inputs (B, n) | (n,), rotation_weights, entangler_weights).

    ``depolarizing`` = p > 0 follows every gate with a single-qubit depolarising channel of
    probability p on each wire it acts on (``qml.DepolarizingChannel``; the final QFT counts as
    one gate on every wire): a simple noise model of a device whose every gate errs with
    probability ~p per qubit. It needs a mixed-state device such as ``default.mixed``.
    """
    import pennylane as qml

    embed = {"X": qml.RX, "Y": qml.RY, "Z": qml.RZ}[spec.embedding]
    two_qubit = {"cnot": qml.CNOT, "cz": qml.CZ, "crz": qml.CRZ, "isingzz": qml.IsingZZ}[
        spec.entangler_gate
    ]
    trainable = spec.entangler_weight_shape is not None
    n = spec.n_qubits

    def noise(*wires: int) -> None:
        if depolarizing > 0:
            for wire in wires:
                qml.DepolarizingChannel(depolarizing, wires=wire)

    def circuit(inputs, rotation_weights, entangler_weights=None):
        for layer in range(spec.n_layers):
            if layer == 0 or spec.reupload:
                for wire in range(n):
                    embed(inputs[..., wire], wires=wire)
                    noise(wire)
            for wire in range(n):
                w = rotation_weights[layer, wire]
                if spec.rotations == "ryrz":
                    qml.RY(w[0], wires=wire)
                    noise(wire)
                    qml.RZ(w[1], wires=wire)
                else:
                    qml.Rot(w[0], w[1], w[2], wires=wire)
                noise(wire)
            for p, (control, target) in enumerate(spec.entangler_pairs):
                if trainable:
                    two_qubit(entangler_weights[layer, p], wires=[control, target])
                else:
                    two_qubit(wires=[control, target])
                noise(control, target)
        if spec.final_qft:
            qml.QFT(wires=range(n))
            noise(*range(n))
        out = []
        for m in spec.measurements:
            if m == "z":
                out += [qml.expval(qml.PauliZ(i)) for i in range(n)]
            elif m == "zz":
                out += [qml.expval(qml.PauliZ(i) @ qml.PauliZ(j)) for i, j in spec.zz_pairs]
            elif m == "probs":
                out.append(qml.probs(wires=range(n)))
            else:
                out.append(qml.state())
        return out

    return circuit


class PennyLaneCircuit:
    """A QNode for ``spec`` on the named PennyLane device; call it like the torch backend."""

    def __init__(
        self,
        spec: CircuitSpec,
        device_name: str = "default.qubit",
        *,
        shots: int | None = None,
        diff_method: str = "best",
        device_options: dict[str, Any] | None = None,
        depolarizing: float = 0.0,
    ) -> None:
        """``device_options`` go to ``qml.device`` (e.g. ``{"seed": 1}`` for reproducible shots);
        ``depolarizing``: see :func:`circuit_function` (needs e.g. ``default.mixed``)."""
        import pennylane as qml

        if not 0.0 <= depolarizing <= 1.0:
            raise ConfigError(
                f"pennylane backend: depolarizing={depolarizing!r} is invalid; expected a probability in [0, 1]"
            )
        if depolarizing > 0 and "state" in spec.measurements:
            raise ConfigError(
                "pennylane backend: the 'state' measurement is a pure state; drop it to simulate noise"
            )

        if shots is not None and (not isinstance(shots, int) or shots < 1):
            raise ConfigError(
                f"pennylane backend: shots={shots!r} is invalid; expected a positive integer or None (exact)"
            )
        if shots is not None and "state" in spec.measurements:
            raise ConfigError(
                "pennylane backend: the 'state' measurement needs exact simulation; use shots=None or drop 'state'"
            )
        if diff_method not in DIFF_METHODS:
            raise ConfigError(
                f"pennylane backend: diff_method {diff_method!r} is unknown; expected one of {', '.join(DIFF_METHODS)}"
            )
        try:
            device = qml.device(device_name, wires=spec.n_qubits, **(device_options or {}))
        except Exception as exc:  # PennyLane raises DeviceError or plugin-specific errors
            raise ConfigError(
                f"pennylane backend: cannot create device {device_name!r}: {exc}"
            ) from None
        try:
            self.qnode = qml.QNode(
                circuit_function(spec, depolarizing),
                device,
                interface="torch",
                diff_method=diff_method,
                shots=shots,
            )
        except Exception as exc:
            raise ConfigError(
                f"pennylane backend: device {device_name!r} rejects diff_method={diff_method!r}, shots={shots!r}: {exc}"
            ) from None
        self.spec = spec
        self.device_name = device_name
        self.shots = shots
        self.diff_method = diff_method
        self.depolarizing = depolarizing

    def features(
        self,
        inputs: torch.Tensor,
        rotation_weights: torch.Tensor,
        entangler_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """Measured features (B, n_outputs) in the spec's order, for inputs (B, n) radians."""
        try:
            raw = self.qnode(inputs, rotation_weights, entangler_weights)
        except Exception as exc:
            if isinstance(exc, (RuntimeError, TypeError)) and "grad" in str(exc).lower():
                raise
            hint = (
                "; depolarizing noise needs a mixed-state device such as default.mixed"
                if self.depolarizing > 0
                else ""
            )
            raise ConfigError(
                f"pennylane backend: device {self.device_name!r} failed to run the circuit "
                f"(diff_method={self.diff_method!r}, shots={self.shots!r}, "
                f"depolarizing={self.depolarizing!r}): {' '.join(str(exc).split())}{hint}"
            ) from None
        return _to_features(self.spec, raw, inputs.shape[0])


def _to_features(spec: CircuitSpec, raw: Any, batch: int) -> torch.Tensor:
    """Concatenate the QNode's outputs (scalars per expval, arrays for probs/state) to (B, n_outputs)."""
    values = [torch.as_tensor(v) for v in raw]
    parts: list[torch.Tensor] = []
    position = 0
    for m in spec.measurements:
        if m in ("z", "zz"):
            count = spec.measurement_size(m)
            if count:
                parts.append(
                    torch.stack(
                        [v.reshape(batch) for v in values[position : position + count]], dim=1
                    )
                )
            position += count
        else:
            value = values[position].reshape(batch, spec.dim)
            position += 1
            parts.append(torch.cat([value.real, value.imag], dim=1) if m == "state" else value)
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in parts))
    return torch.cat([p.to(dtype) for p in parts], dim=1)
