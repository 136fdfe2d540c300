"""Bring your own circuit: a user's PennyLane function as a circuit layer of qcalo's models.

The function is written as for PennyLane's ``qml.qnn.TorchLayer``::

    def circuit(inputs, weights):                 # inputs: (n_inputs,) or (B, n_inputs)
        qml.AngleEmbedding(inputs, wires=range(4), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(4))
        return [qml.expval(qml.PauliZ(i)) for i in range(4)]

    layer = from_pennylane(circuit, n_qubits=4, weight_shapes={"weights": (2, 4, 3)})
    layer(torch.rand(32, 4)).shape               # torch.Size([32, 4])

How it runs. The function is traced twice with PennyLane (``qml.tape.make_qscript``) at two
random points (inputs, weights), in float64, and its operations are decomposed until every one
is a gate that :mod:`qcalo.quantum.gate_program` runs natively (templates such as
AngleEmbedding, StronglyEntanglingLayers or QFT decompose into them). Each gate parameter's
dependence on the inputs and weights is read from the first trace with autograd (its gradient)
and checked against the second: it must be affine, θ = a·x + c·w + b. The measurements must be
``qml.expval`` of observables diagonal in the computational basis (PauliZ, products of PauliZ,
real-weighted sums of those) or ``qml.probs``. Then the circuit runs on qcalo's batched torch
statevector engine (:class:`qcalo.quantum.gate_program.GateProgram`). Otherwise (an operation
without a supported decomposition, a nonlinear parameter such as IQPEmbedding's x_i·x_j,
structure that depends on the values, another measurement) it runs as a PennyLane QNode with
the torch interface on ``device_name``. Either way one line on stderr says which and why, once
per function and process.

Conventions: wire 0 is the most significant bit (PennyLane's); the layer's inputs are
(B, n_inputs) or (n_inputs,), its outputs (B, n_outputs) or (n_outputs,), the measurements
concatenated in the order the function returns them (``expval`` one column, ``probs(wires)``
2^len(wires) columns). Weights are ``nn.Parameter`` s named as in ``weight_shapes``, drawn
uniformly from [0, 2π) like :class:`qcalo.quantum.QuantumLayer` 's.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from qcalo.errors import ConfigError, DataError
from qcalo.quantum.gate_program import (
    Gate,
    GateProgram,
    Measurement,
    ParameterMap,
    n_parameters,
    supported_gates,
)
from qcalo.quantum.spec import MAX_QUBITS

if TYPE_CHECKING:
    from qcalo.quantum.layer import QuantumLayer

__all__ = [
    "FunctionCircuitConfig",
    "UserCircuit",
    "PennyLaneFunctionLayer",
    "from_pennylane",
    "load_function",
    "Compiled",
]

BackendChoice = Literal["auto", "torch", "pennylane"]
#: Tolerance of the affine check of a gate parameter between the two traces (float64).
AFFINE_TOLERANCE = 1e-8
#: Decomposition depth after which an operation counts as unsupported.
MAX_DECOMPOSITION_DEPTH = 16


# ----------------------------------------------------------------------------------------------
# Finding the function


def load_function(path: str) -> Callable[..., Any]:
    """The function named ``"package.module:name"`` or ``"path/to/file.py:name"``.

    ConfigError (one line, saying what to fix) when it cannot be imported or is not callable.
    """
    module_name, sep, attribute = path.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(
            f"circuit function {path!r} is not of the form 'package.module:function' "
            "or 'path/to/file.py:function'"
        )
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ConfigError(f"circuit function {path!r}: file {module_name} does not exist")
            spec = importlib.util.spec_from_file_location(f"qcalo_user_circuit_{file.stem}", file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"circuit function {path!r}: importing {module_name} failed "
            f"({type(exc).__name__}: {' '.join(str(exc).split())}); check the module path and "
            "that it is importable (on PYTHONPATH or installed)"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"circuit function {path!r}: {module_name} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"circuit function {path!r} is a {type(target).__name__}, not a function")
    return target


def _check_shapes(weight_shapes: Mapping[str, Sequence[int] | int]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in weight_shapes.items():
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not name.isidentifier() or name == "inputs":
            raise ConfigError(
                f"weight_shapes: {name!r} is not a usable argument name; use a Python identifier "
                "other than 'inputs'"
            )
        if not all(isinstance(d, int) and d >= 1 for d in dims):
            raise ConfigError(
                f"weight_shapes.{name}: {list(dims)} is not a shape; expected a list of positive integers"
            )
        shapes[name] = dims
    return shapes


# ----------------------------------------------------------------------------------------------
# The description


@dataclass(frozen=True)
class UserCircuit:
    """A user's circuit function with its sizes: what :class:`PennyLaneFunctionLayer` builds from.

    ``function``: the callable ``f(inputs, **weights)``; ``name``: how messages call it (its
    import path when it came from a config); ``backend``: ``"auto"`` (qcalo's engine when it
    can, else PennyLane), ``"torch"`` (the engine or a ConfigError saying why not) or
    ``"pennylane"`` (always a QNode on ``device_name`` with ``diff_method``).
    """

    function: Callable[..., Any]
    n_qubits: int
    n_inputs: int
    weight_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    name: str = ""
    backend: BackendChoice = "auto"
    device_name: str = "default.qubit"
    diff_method: str = "best"

    @classmethod
    def build(
        cls,
        function: Callable[..., Any] | str,
        n_qubits: int,
        weight_shapes: Mapping[str, Sequence[int] | int],
        *,
        n_inputs: int | None = None,
        backend: BackendChoice = "auto",
        device_name: str = "default.qubit",
        diff_method: str = "best",
    ) -> UserCircuit:
        """Validate the arguments (ConfigError) and import ``function`` if it is a path."""
        name = function if isinstance(function, str) else _callable_name(function)
        fn = load_function(function) if isinstance(function, str) else function
        if not callable(fn):
            raise ConfigError(f"circuit function {name}: not callable")
        if not isinstance(n_qubits, int) or not 1 <= n_qubits <= MAX_QUBITS:
            raise ConfigError(f"circuit {name}: n_qubits={n_qubits!r}; expected 1..{MAX_QUBITS}")
        n_in = n_qubits if n_inputs is None else n_inputs
        if not isinstance(n_in, int) or n_in < 1:
            raise ConfigError(f"circuit {name}: n_inputs={n_in!r}; expected a positive integer")
        if backend not in ("auto", "torch", "pennylane"):
            raise ConfigError(
                f"circuit {name}: backend {backend!r} is unknown; expected auto, torch or pennylane"
            )
        shapes = _check_shapes(weight_shapes)
        _check_signature(fn, name, shapes)
        return cls(
            fn, n_qubits, n_in, tuple(shapes.items()), name, backend, device_name, diff_method
        )

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.weight_shapes)

    def compile(self) -> Compiled:
        """Trace the function and pick where it runs (cached per circuit); says its line once."""
        with _lock:
            compiled = _compiled.get(self)
            if compiled is None:
                compiled = _compile(self)
                _compiled[self] = compiled
            line = compiled.line(self)
            if line not in _said:
                _said.add(line)
                print(line, file=sys.stderr)
        return compiled


def _callable_name(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}:{qualname}" if module else str(qualname)


def _check_signature(fn: Callable[..., Any], name: str, shapes: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and some wrappers: the trace will tell
    params = signature.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    positional = [
        p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params.values()):
        raise ConfigError(
            f"circuit function {name} takes no inputs argument; expected f(inputs, "
            + ", ".join(shapes)
            + ")"
        )
    missing = [w for w in shapes if w not in params]
    if missing:
        raise ConfigError(
            f"circuit function {name}{signature} has no argument {', '.join(repr(m) for m in missing)} "
            "named in weight_shapes; name each weight argument in weight_shapes"
        )
    extra = [
        p.name
        for p in positional[1:]
        if p.name not in shapes and p.default is inspect.Parameter.empty
    ]
    if extra:
        raise ConfigError(
            f"circuit function {name}{signature}: argument(s) {', '.join(extra)} have no default and "
            "are not in weight_shapes; give each weight's shape in weight_shapes"
        )


# ----------------------------------------------------------------------------------------------
# Tracing


class _Unsupported(Exception):
    """Why the circuit cannot run on the engine (one clause, no trailing period)."""


@dataclass
class _Trace:
    gates: list[tuple[str, tuple[int, ...], str]]  # name, wires, top-level operation's name
    values: list[Any]  # one per gate parameter, in order
    measurements: list[Any]


@dataclass
class Compiled:
    """Where a :class:`UserCircuit` runs: ``program`` (the engine) or None (PennyLane), why."""

    n_outputs: int
    program: GateProgram | None
    reason: str
    batched: bool = True  # PennyLane path: the function takes (B, n_inputs) inputs
    n_operations: int = 0
    n_measurements: int = 0
    output_kinds: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return "torch" if self.program is not None else "pennylane"

    def line(self, circuit: UserCircuit) -> str:
        if self.program is not None:
            return (
                f"qcalo: circuit {circuit.name} runs on qcalo's torch statevector engine "
                f"({self.reason})"
            )
        return (
            f"qcalo: circuit {circuit.name} runs on PennyLane ({circuit.device_name}, "
            f"diff_method={circuit.diff_method}; slower): {self.reason}"
        )


_lock = threading.Lock()
_compiled: dict[UserCircuit, Compiled] = {}
_said: set[str] = set()


def _random_arguments(
    circuit: UserCircuit, seed: int, batch: int | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shape = (circuit.n_inputs,) if batch is None else (batch, circuit.n_inputs)
    inputs = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    weights = {
        name: torch.rand(s, generator=generator, dtype=torch.float64) * (2 * math.pi)
        for name, s in circuit.weight_shapes
    }
    return inputs, weights


def _make_tape(circuit: UserCircuit, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> Any:
    import pennylane as qml

    return qml.tape.make_qscript(circuit.function)(inputs, **weights)


def _expand(op: Any, top: str, supported: frozenset[str], depth: int = 0) -> list[tuple[Any, str]]:
    """``op`` decomposed until every operation is supported: [(operation, top-level name)]."""
    if op.name in supported:
        return [(op, top)]
    if depth >= MAX_DECOMPOSITION_DEPTH or not getattr(op, "has_decomposition", False):
        where = "" if op.name == top else f" (inside {top})"
        raise _Unsupported(
            f"operation {op.name}{where} is not one qcalo's engine runs and has no decomposition into ones it does"
        )
    try:
        parts = op.decomposition()
    except Exception as exc:
        raise _Unsupported(f"operation {op.name} could not be decomposed ({exc})") from None
    out: list[tuple[Any, str]] = []
    for part in parts:
        out += _expand(part, top, supported, depth + 1)
    return out


def _wires(op: Any, n_qubits: int, name: str) -> tuple[int, ...]:
    wires = tuple(op.wires.tolist())
    for w in wires:
        if not isinstance(w, (int, np.integer)) or not 0 <= int(w) < n_qubits:
            raise ConfigError(
                f"circuit {name}: {op.name} acts on wire {w!r}; the circuit has wires 0..{n_qubits - 1} "
                "(n_qubits): use integer wires in that range"
            )
    return tuple(int(w) for w in wires)


def _trace(
    circuit: UserCircuit, seed: int, batch_of_one: bool
) -> tuple[_Trace, torch.Tensor, dict[str, torch.Tensor]]:
    inputs, weights = _random_arguments(circuit, seed, 1 if batch_of_one else None)
    inputs.requires_grad_(True)
    for w in weights.values():
        w.requires_grad_(True)
    tape = _make_tape(circuit, inputs, weights)
    supported = supported_gates()
    gates: list[tuple[str, tuple[int, ...], str]] = []
    values: list[Any] = []
    for op in tape.operations:
        _wires(op, circuit.n_qubits, circuit.name)
        for part, top in _expand(op, op.name, supported):
            if part.name in ("Barrier", "Snapshot", "GlobalPhase"):
                continue
            wires = _wires(part, circuit.n_qubits, circuit.name)
            params = list(part.parameters)
            if len(params) != n_parameters(part.name):
                raise _Unsupported(f"operation {part.name} has {len(params)} parameters")
            for p in params:
                size = p.numel() if isinstance(p, torch.Tensor) else np.size(p)
                if size != 1:
                    raise _Unsupported(
                        f"a parameter of {part.name} on wires {list(wires)} (from {top}) has "
                        f"{size} values, not one per sample"
                    )
                values.append(
                    p.reshape(())
                    if isinstance(p, torch.Tensor)
                    else float(np.asarray(p).reshape(()))
                )
            gates.append((part.name, wires, top))
    return _Trace(gates, values, list(tape.measurements)), inputs, weights


def _measurements(raw: Sequence[Any], n_qubits: int, name: str) -> list[Measurement]:
    import pennylane as qml

    out: list[Measurement] = []
    for m in raw:
        if isinstance(m, qml.measurements.ExpectationMP) and m.obs is not None:
            rep = m.obs.pauli_rep
            if rep is None:
                raise _Unsupported(f"measurement expval({m.obs}) is not of a Pauli observable")
            terms = []
            for word, coefficient in rep.items():
                letters = set(word.values())
                if letters - {"Z", "I"}:
                    raise _Unsupported(
                        f"measurement expval({m.obs}) has X or Y terms (only Z-diagonal observables run on the engine)"
                    )
                if isinstance(coefficient, torch.Tensor):
                    if coefficient.requires_grad:
                        raise _Unsupported(
                            f"measurement expval({m.obs}) has a trainable coefficient"
                        )
                    coefficient = coefficient.detach().cpu().numpy()
                value = complex(np.asarray(coefficient).reshape(()))
                if abs(value.imag) > 1e-12:
                    raise _Unsupported(f"measurement expval({m.obs}) has a complex coefficient")
                wires = tuple(int(w) for w, letter in word.items() if letter == "Z")
                terms.append((value.real, wires))
            out.append(Measurement("expval", terms=tuple(terms)))
        elif isinstance(m, qml.measurements.ProbabilityMP) and m.obs is None:
            wires = (
                tuple(int(w) for w in m.wires.tolist()) if len(m.wires) else tuple(range(n_qubits))
            )
            out.append(Measurement("probs", wires=wires))
        else:
            raise _Unsupported(f"measurement {m} is not expval of a Z-diagonal observable or probs")
    return out


def _output_size(raw: Sequence[Any], n_qubits: int, name: str) -> int:
    """Real features the measurements give per sample (PennyLane path too)."""
    import pennylane as qml

    total = 0
    for m in raw:
        if isinstance(m, (qml.measurements.ExpectationMP, qml.measurements.VarianceMP)):
            total += 1
        elif isinstance(m, qml.measurements.ProbabilityMP):
            total += 2 ** (len(m.wires) if len(m.wires) else n_qubits)
        else:
            raise ConfigError(
                f"circuit {name} returns {m}, which is not a real feature; return qml.expval, "
                "qml.var or qml.probs measurements (a list of them for several)"
            )
    return total


def _affine_map(
    trace: _Trace, inputs: torch.Tensor, weights: dict[str, torch.Tensor]
) -> ParameterMap:
    """A_x, A_w and b of every gate parameter, from autograd on the first trace."""
    n_params = len(trace.values)
    leaves = [inputs, *weights.values()]
    n_inputs = inputs.shape[-1]
    n_weights = sum(w.numel() for w in weights.values())
    a_x = np.zeros((n_params, n_inputs))
    a_w = np.zeros((n_params, n_weights))
    offset = np.zeros(n_params)
    x0 = inputs.detach().reshape(-1).numpy()
    w0 = (
        torch.cat([w.detach().reshape(-1) for w in weights.values()]).numpy()
        if weights
        else np.zeros(0)
    )
    for k, value in enumerate(trace.values):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            grads = torch.autograd.grad(value, leaves, retain_graph=True, allow_unused=True)
            if grads[0] is not None:
                a_x[k] = grads[0].reshape(-1).numpy()
            row = [
                (g if g is not None else torch.zeros_like(w)).reshape(-1)
                for g, w in zip(grads[1:], weights.values(), strict=True)
            ]
            if row:
                a_w[k] = torch.cat(row).numpy()
            number = float(value.detach())
        else:
            number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        offset[k] = number - a_x[k] @ x0 - a_w[k] @ w0
    return ParameterMap(a_x, a_w, offset)


def _compile(circuit: UserCircuit) -> Compiled:
    """Trace ``circuit``; the engine program if it qualifies, else the PennyLane path."""
    # What the measurements give, from a plain trace (also the first check that it runs).
    try:
        first, inputs, weights = _trace_either(circuit, seed=0)
        n_outputs = _output_size(first.measurements, circuit.n_qubits, circuit.name)
    except _Unsupported as exc:
        return _pennylane_path(circuit, str(exc))
    if circuit.backend == "pennylane":
        return _pennylane_path(circuit, "asked for (backend: pennylane)", n_outputs)
    try:
        program = _program(circuit, first, inputs, weights)
    except _Unsupported as exc:
        if circuit.backend == "torch":
            raise ConfigError(
                f"circuit {circuit.name} cannot run on qcalo's torch engine (backend: torch): {exc}; "
                "use backend: auto or pennylane"
            ) from None
        return _pennylane_path(circuit, str(exc), n_outputs)
    n_ops = len(first.gates)
    reason = (
        f"its {n_ops} operations and {len(program.measurements)} measurements are all supported"
    )
    return Compiled(n_outputs, program, reason, True, n_ops, len(program.measurements))


def _trace_either(
    circuit: UserCircuit, seed: int
) -> tuple[_Trace, torch.Tensor, dict[str, torch.Tensor]]:
    """Trace with unbatched inputs (n_inputs,), or a batch of one if the function needs (B, n)."""
    errors = []
    for batch_of_one in (False, True):
        try:
            return _trace(circuit, seed, batch_of_one)
        except (_Unsupported, ConfigError):
            raise
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    shapes = ", ".join(f"{k}: {list(v)}" for k, v in circuit.weight_shapes) or "none"
    raise ConfigError(
        f"circuit {circuit.name} fails on inputs of shape ({circuit.n_inputs},) and weights of "
        f"shapes {{{shapes}}}: {errors[0]}; check n_inputs, n_qubits and weight_shapes"
    )


def _program(
    circuit: UserCircuit, first: _Trace, inputs: torch.Tensor, weights: dict[str, torch.Tensor]
) -> GateProgram:
    measurements = _measurements(first.measurements, circuit.n_qubits, circuit.name)
    parameters = _affine_map(first, inputs, weights)
    batch_of_one = inputs.dim() == 2
    second, inputs2, weights2 = _trace(circuit, seed=1, batch_of_one=batch_of_one)
    structure = [(n, w) for n, w, _ in first.gates]
    if structure != [(n, w) for n, w, _ in second.gates] or len(first.measurements) != len(
        second.measurements
    ):
        raise _Unsupported(
            "its operations change with the values of the inputs or weights (control flow on values)"
        )
    if _measurements(second.measurements, circuit.n_qubits, circuit.name) != measurements:
        raise _Unsupported("its measurements change with the values of the inputs or weights")
    x1 = inputs2.detach().reshape(-1).numpy()
    w1 = (
        torch.cat([w.detach().reshape(-1) for w in weights2.values()]).numpy()
        if weights2
        else np.zeros(0)
    )
    predicted = parameters.inputs @ x1 + parameters.weights @ w1 + parameters.offset
    owners = [
        (name, wires, top) for name, wires, top in first.gates for _ in range(n_parameters(name))
    ]
    for k, value in enumerate(second.values):
        actual = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if abs(actual - predicted[k]) > AFFINE_TOLERANCE * (1 + abs(actual)):
            name, wires, top = owners[k]
            where = "" if top == name else f" (from {top})"
            raise _Unsupported(
                f"a parameter of {name} on wires {list(wires)}{where} is not an affine function of "
                "the inputs and weights (e.g. a product or a nonlinear function of them)"
            )
    gates: list[Gate] = []
    index = 0
    for name, wires, _ in first.gates:
        count = n_parameters(name)
        gates.append(Gate(name, wires, tuple(range(index, index + count))))
        index += count
    return GateProgram(circuit.n_qubits, gates, measurements, parameters)


def _pennylane_path(circuit: UserCircuit, reason: str, n_outputs: int | None = None) -> Compiled:
    if circuit.backend == "torch":
        raise ConfigError(
            f"circuit {circuit.name} cannot run on qcalo's torch engine (backend: torch): {reason}; "
            "use backend: auto or pennylane"
        )
    trial = circuit.n_inputs + 2
    inputs, weights = _random_arguments(circuit, 0, trial)
    batched = True
    try:
        tape = _make_tape(circuit, inputs, weights)
        batched = tape.batch_size in (None, trial) and tape.batch_size is not None
        if n_outputs is None:
            n_outputs = _output_size(tape.measurements, circuit.n_qubits, circuit.name)
    except ConfigError:
        raise
    except Exception:
        batched = False
    if n_outputs is None:
        inputs1, weights1 = _random_arguments(circuit, 0, None)
        try:
            tape = _make_tape(circuit, inputs1, weights1)
        except Exception as exc:
            raise ConfigError(
                f"circuit {circuit.name} fails on inputs of shape ({circuit.n_inputs},): {exc}"
            ) from None
        n_outputs = _output_size(tape.measurements, circuit.n_qubits, circuit.name)
    return Compiled(n_outputs, None, reason, batched)


# ----------------------------------------------------------------------------------------------
# The layer


class PennyLaneFunctionLayer(nn.Module):
    """A user's PennyLane circuit function as a torch module: (B, n_inputs) -> (B, n_outputs).

    Also (n_inputs,) -> (n_outputs,). ``backend`` (property) is ``"torch"`` when the circuit
    runs on :class:`qcalo.quantum.gate_program.GateProgram`, ``"pennylane"`` when it runs as a
    QNode. ``dtype``: ``torch.complex64`` (default) or ``torch.complex128``; weights are kept in
    the matching real dtype (``.double()`` switches to complex128), the output in the input's
    floating dtype. Weights: one ``nn.Parameter`` per ``weight_shapes`` entry, in
    ``self.weights[name]``, uniform in [0, 2π) from ``generator`` (or one seeded with
    ``seed``; torch's global RNG when both are None).
    """

    def __init__(
        self,
        circuit: UserCircuit,
        *,
        dtype: torch.dtype = torch.complex64,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype)
        if real is None:
            raise ConfigError(
                f"circuit layer dtype {dtype} is not supported; expected torch.complex64 or torch.complex128"
            )
        self.circuit = circuit
        self.compiled = circuit.compile()
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        # Drawn in weight_shapes order (a ParameterDict built from a dict would sort the names).
        self.weights = nn.ParameterDict()
        for name, shape in circuit.weight_shapes:
            angles = torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * math.pi)
            self.weights[name] = nn.Parameter(angles.to(real))
        self._qnode: Any = None

    @property
    def backend(self) -> str:
        return self.compiled.backend

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def n_qubits(self) -> int:
        return self.circuit.n_qubits

    @property
    def n_outputs(self) -> int:
        return self.compiled.n_outputs

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{k}={list(v)}" for k, v in self.circuit.weight_shapes)
        return (
            f"{self.circuit.name}, n_qubits={self.n_qubits}, n_inputs={self.n_inputs}, "
            f"n_outputs={self.n_outputs}, backend={self.backend}, weights: {shapes}"
        )

    def _flat_weights(self) -> torch.Tensor:
        params = [self.weights[name] for name, _ in self.circuit.weight_shapes]
        if not params:
            return torch.zeros(0, dtype=self._real_dtype(), device=self._device())
        return torch.cat([p.reshape(-1) for p in params])

    def _real_dtype(self) -> torch.dtype:
        for p in self.weights.values():
            return p.dtype
        return torch.float32

    def _device(self) -> torch.device:
        for p in self.weights.values():
            return p.device
        return torch.device("cpu")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_inputs) | (n_inputs,) -> (B, n_outputs) | (n_outputs,)."""
        if not isinstance(inputs, torch.Tensor):
            inputs = torch.as_tensor(inputs)
        if inputs.dim() not in (1, 2) or inputs.shape[-1] != self.n_inputs:
            raise DataError(
                f"circuit layer input has shape {tuple(inputs.shape)}; expected (batch, {self.n_inputs}) or ({self.n_inputs},)"
            )
        out_dtype = inputs.dtype if inputs.is_floating_point() else self._real_dtype()
        unbatched = inputs.dim() == 1
        x = (inputs[None] if unbatched else inputs).to(self._real_dtype())
        program = self.compiled.program
        if program is not None:
            out = program.features(x, self._flat_weights())
        else:
            out = self._pennylane_features(x)
        out = out.to(out_dtype)
        return out[0] if unbatched else out

    def _pennylane_features(self, x: torch.Tensor) -> torch.Tensor:
        import pennylane as qml

        if self._qnode is None:
            try:
                device = qml.device(self.circuit.device_name, wires=self.n_qubits)
            except Exception as exc:
                raise ConfigError(
                    f"circuit {self.circuit.name}: cannot create PennyLane device "
                    f"{self.circuit.device_name!r}: {exc}"
                ) from None
            self._qnode = qml.QNode(
                self.circuit.function,
                device,
                interface="torch",
                diff_method=self.circuit.diff_method,
            )
        weights = dict(self.weights.items())
        if self.compiled.batched:
            return _flatten(self._qnode(x, **weights), x.shape[0])
        # The function indexes unbatched inputs (inputs[i]): one QNode call per sample.
        return torch.cat([_flatten(self._qnode(row, **weights), 1) for row in x])


def _flatten(raw: Any, batch: int) -> torch.Tensor:
    """A QNode's result (one measurement or a sequence) as (batch, n_outputs) real."""
    parts = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    tensors = [torch.as_tensor(p).reshape(batch, -1) for p in parts]
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else tensors[0].dtype
    return torch.cat([t.to(dtype) for t in tensors], dim=1)


def from_pennylane(
    function: Callable[..., Any] | str,
    n_qubits: int,
    weight_shapes: Mapping[str, Sequence[int] | int],
    *,
    n_inputs: int | None = None,
    backend: BackendChoice = "auto",
    device_name: str = "default.qubit",
    diff_method: str = "best",
    dtype: torch.dtype = torch.complex64,
    seed: int | None = None,
) -> PennyLaneFunctionLayer:
    """A torch layer running the PennyLane circuit function ``function(inputs, **weights)``.

    ``function``: a callable or its path (``"package.module:name"``, ``"file.py:name"``);
    ``n_qubits``: its wires 0..n-1; ``weight_shapes``: name -> shape of each trainable argument
    (as for ``qml.qnn.TorchLayer``); ``n_inputs``: features per sample (default n_qubits).
    It runs on qcalo's torch engine when every operation and measurement is supported, else as
    a QNode on ``device_name`` (``backend``: ``"auto"``; ``"torch"`` or ``"pennylane"`` force
    one), and says which on stderr, once. See the module docstring.

    Example::

        >>> import pennylane as qml, torch
        >>> def circuit(inputs, weights):
        ...     qml.AngleEmbedding(inputs, wires=range(2))
        ...     qml.BasicEntanglerLayers(weights, wires=range(2))
        ...     return [qml.expval(qml.PauliZ(0)), qml.probs(wires=[1])]
        >>> layer = from_pennylane(circuit, 2, {"weights": (3, 2)}, seed=0)  # doctest: +SKIP
        >>> layer(torch.zeros(5, 2)).shape  # doctest: +SKIP
        torch.Size([5, 3])
    """
    circuit = UserCircuit.build(
        function,
        n_qubits,
        weight_shapes,
        n_inputs=n_inputs,
        backend=backend,
        device_name=device_name,
        diff_method=diff_method,
    )
    return PennyLaneFunctionLayer(circuit, dtype=dtype, seed=seed)


# ----------------------------------------------------------------------------------------------
# Config


class FunctionCircuitConfig(BaseModel):
    """A circuit that is the user's own PennyLane function (the ``circuit:`` section of a flow
    stage, in place of the layered circuit's fields). Used by quantum, hybrid and full_quantum
    conditioners; see the Circuits page ("Bring your own circuit")."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    function: str = Field(
        description="the circuit function f(inputs, **weights) with qml operations and measurements: "
        "'package.module:name' (importable) or 'path/to/file.py:name'"
    )
    n_qubits: int = Field(ge=1, le=MAX_QUBITS, description="wires of the circuit, 0..n_qubits-1")
    n_inputs: int | None = Field(
        default=None,
        ge=1,
        description="features per sample the function takes as inputs (the conditioner maps its "
        "input to this many angles, π·tanh); null = n_qubits",
    )
    weight_shapes: dict[str, list[int]] = Field(
        default_factory=dict,
        description="shape of each trainable argument of the function, by name (as for "
        "qml.qnn.TorchLayer); drawn uniformly from [0, 2π)",
    )
    backend: BackendChoice = Field(
        default="auto",
        description="auto: qcalo's torch engine when every operation and measurement is "
        "supported, else a PennyLane QNode (one line on stderr says which and why); torch: "
        "the engine or an error; pennylane: always a QNode",
    )
    device_name: str = Field(
        default="default.qubit", description="PennyLane device of the QNode path"
    )
    diff_method: str = Field(default="best", description="PennyLane diff_method of the QNode path")

    @field_validator("function")
    @classmethod
    def _importable(cls, value: str) -> str:
        load_function(value)
        return value

    @field_validator("weight_shapes")
    @classmethod
    def _shapes(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        _check_shapes(value)
        return value

    @model_validator(mode="after")
    def _signature(self) -> FunctionCircuitConfig:
        _check_signature(load_function(self.function), self.function, self.weight_shapes)
        return self

    def to_spec(self) -> UserCircuit:
        """The :class:`UserCircuit` this config describes (what conditioners build a layer of)."""
        return UserCircuit.build(
            self.function,
            self.n_qubits,
            self.weight_shapes,
            n_inputs=self.n_inputs,
            backend=self.backend,
            device_name=self.device_name,
            diff_method=self.diff_method,
        )


# ----------------------------------------------------------------------------------------------
# What conditioners call: a layer for either kind of circuit description


def circuit_layer(spec: Any) -> QuantumLayer | PennyLaneFunctionLayer:
    """The circuit module of a conditioner: a :class:`qcalo.quantum.QuantumLayer` for a
    :class:`qcalo.quantum.CircuitSpec` (or a mapping of its fields), a
    :class:`PennyLaneFunctionLayer` for a :class:`UserCircuit`."""
    if isinstance(spec, UserCircuit):
        return PennyLaneFunctionLayer(spec)
    from qcalo.quantum.layer import QuantumLayer

    return QuantumLayer(spec, backend="torch")


def circuit_inputs(spec: Any) -> int:
    """Angles per sample the circuit of ``spec`` takes (n_qubits for a CircuitSpec)."""
    if isinstance(spec, UserCircuit):
        return spec.n_inputs
    from qcalo.quantum.layer import as_spec

    return as_spec(spec).n_qubits
