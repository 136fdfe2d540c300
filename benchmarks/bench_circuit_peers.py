"""qcalo's circuit engine against every peer simulator that installs here, side by side in one run.

The task of every row: one forward+backward step of a minibatch, loss = Σ_batch Σ_i ⟨Z_i⟩, with
gradients with respect to the circuit weights and the inputs, for

* 6q×2L:  R_Y(x) embedding, Rot(φ, θ, ω) on every wire, linear CNOT chain, ⟨Z_i⟩ of every wire;
* 12q×4L: the same with re-uploading (the embedding before every layer);
* 16q×4L: the same as 6q×2L with 16 wires and 4 layers;

at batch 1, 100 and 1000. Peers (each imported only if installed; the ``bench`` extra of
pyproject.toml lists them, some need a separate environment, see benchmarks/results/
circuit_peers.md): PennyLane ``default.qubit`` (backprop, parameter broadcasting) and
``lightning.qubit`` (adjoint; PennyLane splits a broadcast batch into one tape per sample),
pennylane-catalyst (``qjit`` of ``catalyst.grad`` over lightning's adjoint, ``catalyst.vmap``
over the batch), tensorcircuit-ng (JAX backend: ``jit`` of ``value_and_grad`` of a ``vmap``;
PyTorch backend: autograd through its ``vmap``), qujax (``jit`` / ``vmap`` / ``grad``),
torchquantum (batched statevector, torch autograd), qiskit-aer (``EstimatorV2``: no gradients,
the forward alone is timed). A peer that cannot run a row says why in it.

Every peer's loss is checked against qcalo's on the same inputs and weights before it is timed
(``agrees``: largest |difference| of the loss at batch 2). Timing: a first call (JIT compile
included, reported as ``first_call_s``), one warm-up, then the median of ``repeats`` steps;
points whose step would exceed ``--max-step-s`` are timed at a smaller batch and extrapolated
with the affine fit of :mod:`qcalo.quantum.bench` (fixed cost + per-sample cost), and say so.
Every framework runs on one thread (torch ``set_num_threads(1)``, XLA single-threaded Eigen,
OMP_NUM_THREADS=1). Bounds per row: the flop bound (ideal gate-by-gate flops at the measured
GEMM rate) and the bandwidth bound (ideal layer-fused bytes at the measured copy bandwidth) in
the row's precision.

    python benchmarks/bench_circuit_peers.py [--quick] [--peers a,b] [--circuits 6q2L,...]

Writes benchmarks/results/circuit_peers.json and .md (commit, load average, threads, CPU).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qcalo.quantum import CircuitSpec, QuantumLayer, autotune  # noqa: E402
from qcalo.quantum.bench import (  # noqa: E402
    _extrapolate,
    _Timing,
    bandwidth_bound_ms,
    flop_bound_ms,
    gemm_gflops,
    memory_bandwidth_gbs,
    time_step,
)
from qcalo.training.trainer import cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _spec(n: int, layers: int, reupload: bool) -> CircuitSpec:
    return CircuitSpec(
        n_qubits=n,
        n_layers=layers,
        embedding="Y",
        reupload=reupload,
        rotations="rot",
        entangler="linear",
        entangler_gate="cnot",
        measurements=("z",),
    )


CIRCUITS = {
    "6q2L": _spec(6, 2, False),
    "12q4L-reupload": _spec(12, 4, True),
    "16q4L": _spec(16, 4, False),
}

#: A step: run() does forward+backward (or what the peer can) and blocks until done.
Step = Callable[[], Any]


#: Largest working set a timed step may need (this machine has ~20 GB and is shared): points
#: whose estimated state memory exceeds it are timed at a smaller batch and extrapolated.
MEMORY_BUDGET = 3 * 2**30


def n_gates(spec: CircuitSpec) -> int:
    """Gates of the benchmark circuits written out one by one (embedding, 3 rotations, CNOTs)."""
    embeds = spec.n_layers if spec.reupload else 1
    return embeds * spec.n_qubits + spec.n_layers * (3 * spec.n_qubits + spec.n_qubits - 1)


class Peer:
    """One simulator: ``prepare(spec, x, w)`` -> (step, loss value of that step's forward)."""

    name = ""
    precision = "complex128"
    what = ""  # what the step does, when less than the task

    def states_per_sample(self, spec: CircuitSpec) -> int:
        """(2^n)-amplitude states a step keeps per sample: reverse-mode AD through the gates
        saves one per gate (JAX, torch autograd); adjoint methods and per-sample loops few."""
        return n_gates(spec) + 2

    def prepare(self, spec: CircuitSpec, x: np.ndarray, w: np.ndarray) -> tuple[Step, float]:
        raise NotImplementedError


def _layers_of(spec: CircuitSpec):
    """(layer, embed?) pairs and CNOT pairs of the benchmark circuits."""
    return [(layer, layer == 0 or spec.reupload) for layer in range(spec.n_layers)], [
        (i, i + 1) for i in range(spec.n_qubits - 1)
    ]


# ----------------------------------------------------------------------------------------------
# qcalo


class Qcalo(Peer):
    def __init__(self, dtype: torch.dtype, strategy: str = "auto") -> None:
        self.dtype, self.strategy = dtype, strategy
        self.precision = str(dtype).replace("torch.", "")
        self.name = f"qcalo {self.precision}" + ("" if strategy == "auto" else f" {strategy}")
        self.chosen: dict[tuple[str, int], str] = {}

    def states_per_sample(self, spec):
        return 6  # "auto" keeps autograd's states under 256 MiB; the adjoint path ~5 states

    def prepare(self, spec, x, w):
        layer = QuantumLayer(spec, dtype=self.dtype, strategy=self.strategy)
        real = layer.rotation_weights.dtype
        with torch.no_grad():
            layer.rotation_weights.copy_(torch.as_tensor(w))
        xt = torch.as_tensor(x, dtype=real).requires_grad_(True)
        if self.strategy == "auto":
            circuit = layer._torch_circuit
            self.last_choice = autotune.choose(circuit, x.shape[0], torch.device("cpu"), real, True)
        else:
            self.last_choice = self.strategy

        def step():
            layer.rotation_weights.grad = None
            xt.grad = None
            loss = layer(xt).sum()
            loss.backward()
            return loss

        return step, float(step().detach())


class PennyLane(Peer):
    precision = "complex128"

    def __init__(self, device: str, diff_method: str) -> None:
        self.device, self.diff_method = device, diff_method
        self.name = f"pennylane {device} ({diff_method})"
        if device == "lightning.qubit":
            self.what = "adjoint has no broadcasting: PennyLane runs one tape per sample"

    def states_per_sample(self, spec):
        return 4 if self.device == "lightning.qubit" else n_gates(spec) + 2

    def prepare(self, spec, x, w):
        layer = QuantumLayer(
            spec,
            backend="pennylane",
            device_name=self.device,
            diff_method=self.diff_method,
            dtype=torch.complex128,
        )
        with torch.no_grad():
            layer.rotation_weights.copy_(torch.as_tensor(w))
        xt = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)

        def step():
            layer.rotation_weights.grad = None
            xt.grad = None
            loss = layer(xt).sum()
            loss.backward()
            return loss

        return step, float(step().detach())


# ----------------------------------------------------------------------------------------------
# JAX peers


def _block(tree: Any) -> Any:
    import jax

    return jax.block_until_ready(tree)


class Catalyst(Peer):
    name = "catalyst qjit (lightning adjoint, vmap)"
    precision = "complex128"

    def states_per_sample(self, spec):
        return 4  # adjoint method; catalyst.vmap runs the samples one after another

    def prepare(self, spec, x, w):
        import catalyst
        import jax
        import jax.numpy as jnp
        import pennylane as qml

        # Catalyst 0.15 sometimes fails to lower this step ("'tensor.extract' op failed to
        # verify ... (tensor<i32>) -> i64"): in the committed run at 12 and 16 qubits, and in a
        # fresh process at 6; it compiled at 6 and 12 qubits in other runs. Such rows say so.
        del jax

        layers, pairs = _layers_of(spec)
        n = spec.n_qubits
        dev = qml.device("lightning.qubit", wires=n)

        @qml.qnode(dev, diff_method="adjoint")
        def circuit(xs, ws):
            for layer, embed in layers:
                if embed:
                    for i in range(n):
                        qml.RY(xs[i], wires=i)
                for i in range(n):
                    qml.Rot(ws[layer, i, 0], ws[layer, i, 1], ws[layer, i, 2], wires=i)
                for a, b in pairs:
                    qml.CNOT(wires=[a, b])
            return qml.expval(qml.sum(*[qml.PauliZ(i) for i in range(n)]))

        grad = catalyst.value_and_grad(circuit, argnums=[0, 1])

        @qml.qjit
        def step_fn(xb, wb):
            values, (gx, gw) = catalyst.vmap(grad, in_axes=(0, None))(xb, wb)
            return jnp.sum(values), gx, jnp.sum(gw, axis=0)

        xj, wj = jnp.asarray(x), jnp.asarray(w)

        def step():
            return _block(step_fn(xj, wj))

        return step, float(step()[0])


def _tc_sample_loss(tc: Any, spec: CircuitSpec, K: Any) -> Callable[[Any, Any], Any]:
    layers, pairs = _layers_of(spec)
    n = spec.n_qubits

    def sample_loss(xs, ws):
        c = tc.Circuit(n)
        for layer, embed in layers:
            if embed:
                for i in range(n):
                    c.ry(i, theta=xs[i])
            for i in range(n):
                c.rz(i, theta=ws[layer, i, 0])
                c.ry(i, theta=ws[layer, i, 1])
                c.rz(i, theta=ws[layer, i, 2])
            for a, b in pairs:
                c.cnot(a, b)
        return K.real(K.sum(K.stack([c.expectation_ps(z=[i]) for i in range(n)])))

    return sample_loss


class TensorCircuitJax(Peer):
    name = "tensorcircuit-ng jax (jit, vmap)"
    precision = "complex64"

    def prepare(self, spec, x, w):
        import jax
        import jax.numpy as jnp
        import tensorcircuit as tc

        K = tc.set_backend("jax")
        tc.set_dtype("complex64")
        sample_loss = _tc_sample_loss(tc, spec, K)

        def batch_loss(xb, wb):
            return jnp.sum(jax.vmap(sample_loss, in_axes=(0, None))(xb, wb))

        fn = jax.jit(jax.value_and_grad(batch_loss, argnums=(0, 1)))
        xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)

        def step():
            return _block(fn(xj, wj))

        return step, float(step()[0])


class TensorCircuitTorch(Peer):
    name = "tensorcircuit-ng torch (vmap)"
    precision = "complex64"

    def prepare(self, spec, x, w):
        import tensorcircuit as tc

        K = tc.set_backend("pytorch")
        tc.set_dtype("complex64")
        sample_loss = _tc_sample_loss(tc, spec, K)
        batched = K.vmap(sample_loss, vectorized_argnums=0)
        xt = torch.as_tensor(x, dtype=torch.float32).requires_grad_(True)
        wt = torch.as_tensor(w, dtype=torch.float32).requires_grad_(True)

        def step():
            tc.set_backend("pytorch")
            xt.grad = wt.grad = None
            loss = batched(xt, wt).sum()
            loss.backward()
            return loss

        return step, float(step().detach())


class Qujax(Peer):
    name = "qujax (jit, vmap)"
    precision = "complex64"

    def prepare(self, spec, x, w):
        import jax
        import jax.numpy as jnp
        import qujax

        layers, pairs = _layers_of(spec)
        n = spec.n_qubits
        gates: list[str] = []
        qubits: list[list[int]] = []
        params: list[list[int]] = []
        for layer, embed in layers:
            if embed:
                for i in range(n):
                    gates.append("Ry")
                    qubits.append([i])
                    params.append([i])
            for i in range(n):
                for kappa, gate in enumerate(("Rz", "Ry", "Rz")):
                    gates.append(gate)
                    qubits.append([i])
                    params.append([n + (layer * n + i) * 3 + kappa])
            for a, b in pairs:
                gates.append("CX")
                qubits.append([a, b])
                params.append([])
        to_state = qujax.get_params_to_statetensor_func(gates, qubits, params, n)
        to_expectation = qujax.get_statetensor_to_expectation_func(
            [["Z"]] * n, [[i] for i in range(n)], [1.0] * n
        )

        def sample_loss(xs, ws):  # qujax angles are in units of π
            return to_expectation(to_state(jnp.concatenate([xs, ws.ravel()]) / jnp.pi))

        def batch_loss(xb, wb):
            return jnp.sum(jax.vmap(sample_loss, in_axes=(0, None))(xb, wb))

        fn = jax.jit(jax.value_and_grad(batch_loss, argnums=(0, 1)))
        xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)

        def step():
            return _block(fn(xj, wj))

        return step, float(step()[0])


# ----------------------------------------------------------------------------------------------
# torchquantum, qiskit-aer


def _stub_torchvision() -> bool:
    """Let ``import torchquantum`` succeed without a working torchvision; True if stubbed.

    torchquantum imports torchvision (for its MNIST/vowel dataset helpers only) at import; the
    PyPI torchvision builds do not load their ops against torch 2.13.0+cpu ("operator
    torchvision::nms does not exist"). The simulation does not touch torchvision, so every
    ``torchvision.*`` module is replaced by an inert stub in this process.
    """
    import importlib.abc
    import importlib.machinery
    import sys
    import types

    try:
        import torchvision  # noqa: F401

        return False
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    class Anything:
        def __getattr__(self, name):
            return Anything()

        def __call__(self, *args, **kwargs):
            return Anything()

        def __mro_entries__(self, bases):
            return (object,)

    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Anything()

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            module = Stub(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())
    return True


class TorchQuantum(Peer):
    name = "torchquantum (batched, autograd)"
    precision = "complex64"

    def prepare(self, spec, x, w):
        if _stub_torchvision():
            self.what = (
                "forward+backward, gradients w.r.t. weights and inputs (torchvision stubbed at "
                "import: its PyPI build does not load against torch 2.13.0+cpu)"
            )
        import torchquantum as tq
        import torchquantum.functional as tqf

        layers, pairs = _layers_of(spec)
        n, batch = spec.n_qubits, x.shape[0]
        xt = torch.as_tensor(x, dtype=torch.float32).requires_grad_(True)
        wt = torch.as_tensor(w, dtype=torch.float32).requires_grad_(True)
        observables = [tq.PauliZ()] * n

        def step():
            xt.grad = wt.grad = None
            qdev = tq.QuantumDevice(n_wires=n, bsz=batch, device="cpu")
            for layer, embed in layers:
                if embed:
                    for i in range(n):
                        tqf.ry(qdev, wires=i, params=xt[:, i])
                for i in range(n):
                    for kappa, gate in enumerate((tqf.rz, tqf.ry, tqf.rz)):
                        gate(qdev, wires=i, params=wt[layer, i, kappa].expand(batch))
                for a, b in pairs:
                    tqf.cnot(qdev, wires=[a, b])
            loss = sum(
                tq.measurement.expval(qdev, wires=i, observables=observables[i]).sum()
                for i in range(n)
            )
            loss.backward()
            return loss

        return step, float(step().detach())


class QiskitAer(Peer):
    name = "qiskit-aer EstimatorV2 (statevector)"
    precision = "complex128"
    what = "no gradients (Aer has none; parameter shift would add 2 circuits per parameter): forward only"

    def states_per_sample(self, spec):
        return 2

    def prepare(self, spec, x, w):
        from qiskit import QuantumCircuit
        from qiskit.circuit import ParameterVector
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_aer.primitives import EstimatorV2

        layers, pairs = _layers_of(spec)
        n = spec.n_qubits
        xs = ParameterVector("x", n)
        ws = ParameterVector("w", spec.n_layers * n * 3)
        qc = QuantumCircuit(n)
        for layer, embed in layers:
            if embed:
                for i in range(n):
                    qc.ry(xs[i], i)
            for i in range(n):
                base = (layer * n + i) * 3
                qc.rz(ws[base], i)
                qc.ry(ws[base + 1], i)
                qc.rz(ws[base + 2], i)
            for a, b in pairs:
                qc.cx(a, b)
        observable = SparsePauliOp.from_sparse_list([("Z", [i], 1.0) for i in range(n)], n)
        estimator = EstimatorV2(
            options={
                "backend_options": {"method": "statevector", "max_parallel_threads": 1},
                "default_precision": 0.0,
            }
        )
        ordered = list(qc.parameters)  # qiskit sorts parameters by name: map values accordingly
        names = {p.name: p for p in ordered}
        batch = x.shape[0]
        values = np.zeros((batch, len(ordered)))
        for i in range(n):
            values[:, ordered.index(names[f"x[{i}]"])] = x[:, i]
        flat = w.reshape(-1)
        for j in range(flat.shape[0]):
            values[:, ordered.index(names[f"w[{j}]"])] = flat[j]

        def step():
            result = estimator.run([(qc, observable, values)]).result()
            return float(np.sum(result[0].data.evs))

        return step, step()


def all_peers() -> dict[str, Peer]:
    peers: list[Peer] = [
        Qcalo(torch.complex64),
        Qcalo(torch.complex128),
        PennyLane("default.qubit", "backprop"),
        PennyLane("lightning.qubit", "adjoint"),
        Catalyst(),
        TensorCircuitJax(),
        TensorCircuitTorch(),
        Qujax(),
        TorchQuantum(),
        QiskitAer(),
    ]
    return {p.name: p for p in peers}


# ----------------------------------------------------------------------------------------------


def _inputs(spec: CircuitSpec, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.pi, math.pi, size=(batch, spec.n_qubits))
    w = rng.uniform(0, 2 * math.pi, size=spec.rotation_weight_shape)
    return x, w


def _time(step: Step, repeats: int) -> _Timing:
    return time_step(step, repeats, warmup=1)  # the first call was prepare's


def bench_peer(
    peer: Peer, spec: CircuitSpec, batches: list[int], repeats: int, max_step_s: float, seed: int
) -> list[dict[str, Any]]:
    """Rows of one peer on one circuit (one per batch)."""
    rows: list[dict[str, Any]] = []
    x_check, w = _inputs(spec, 2, seed)
    reference = Qcalo(torch.complex128)
    try:
        _, expected = reference.prepare(spec, x_check, w)
        _, got = peer.prepare(spec, x_check, w)
        agrees = abs(got - expected)
    except Exception as exc:  # a peer that cannot build or run the circuit: say why
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        traceback.print_exc()
        return [{"peer": peer.name, "batch": b, "error": reason} for b in batches]
    measured: dict[int, _Timing] = {}
    first_calls: dict[int, float] = {}
    probe_ms = None
    itemsize = 16 if peer.precision == "complex128" else 8
    cap = max(1, MEMORY_BUDGET // (peer.states_per_sample(spec) * spec.dim * itemsize))
    for batch in sorted(batches):
        at = min(batch, cap)
        if probe_ms is not None and probe_ms[1] * batch / probe_ms[0] > max_step_s * 1e3 * 1.5:
            # Per-sample cost from the largest batch so far says this one is too slow: time
            # the largest batch that fits and extrapolate.
            at = max(probe_ms[0], int(max_step_s * 1e3 / (probe_ms[1] / probe_ms[0])))
            at = min(at, batch, cap)
        if at not in measured:
            x, _ = _inputs(spec, at, seed)
            try:
                start = time.perf_counter()
                step, _ = peer.prepare(spec, x, w)
                first_calls[at] = time.perf_counter() - start
                one = time.perf_counter()
                step()
                one_ms = (time.perf_counter() - one) * 1e3
                n_rep = max(1, min(repeats, int(4 * max_step_s * 1e3 // max(one_ms, 1e-3))))
                measured[at] = _time(step, n_rep)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                traceback.print_exc()
                rows.append({"peer": peer.name, "batch": batch, "error": reason})
                continue
            probe_ms = (at, measured[at].wall_ms)
        timing = measured[at]
        wall, cpu, how = timing.wall_ms, timing.cpu_ms, None
        if at != batch:
            wall, cpu, how = _extrapolate(measured, at, batch)
            if at == cap:
                how += (
                    f" (memory cap: batch {cap} keeps ~{MEMORY_BUDGET / 2**30:.0f} GiB of states)"
                )
        row = {
            "peer": peer.name,
            "precision": peer.precision,
            "batch": batch,
            "ms_per_step": wall,
            "cpu_ms_per_step": cpu,
            "repeats": timing.repeats,
            "first_call_s": first_calls.get(at),
            "extrapolated_from_batch": None if at == batch else at,
            "extrapolation": how,
            "agrees_with_qcalo": agrees,
            "does": peer.what or "forward+backward, gradients w.r.t. weights and inputs",
        }
        if isinstance(peer, Qcalo):
            row["strategy"] = peer.last_choice
        rows.append(row)
    return rows


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_model() -> str:
    return cpu_model()


def _versions() -> dict[str, str]:
    out = {}
    for package in (
        "torch",
        "numpy",
        "pennylane",
        "pennylane_lightning",
        "pennylane_catalyst",
        "jax",
        "jaxlib",
        "tensorcircuit-ng",
        "qujax",
        "torchquantum",
        "qiskit",
        "qiskit-aer",
    ):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", default=",".join(CIRCUITS))
    parser.add_argument("--peers", default=None, help="comma-separated peer names (substrings)")
    parser.add_argument("--batches", default="1,100,1000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-step-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 repeats, max 1 s per step")
    parser.add_argument("--out", default=str(RESULTS / "circuit_peers.json"))
    parser.add_argument("--markdown", default=str(RESULTS / "circuit_peers.md"))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace this run's (circuit, peer) rows in an existing --out report instead of "
        "writing a new one (a rerun of peers that failed; recorded under machine.reruns)",
    )
    parser.add_argument(
        "--merge-from",
        default=None,
        help="comma-separated reports of reruns (other environments, e.g. torchquantum's): "
        "replace their (circuit, peer) rows in --out, rewrite --markdown, time nothing",
    )
    args = parser.parse_args()
    if args.merge_from:
        report = json.loads(Path(args.out).read_text())
        for other_path in args.merge_from.split(","):
            other = json.loads(Path(other_path).read_text())
            redone = {(r["circuit"], r["peer"]) for r in other["results"]}
            report["results"] = [
                r for r in report["results"] if (r["circuit"], r["peer"]) not in redone
            ] + other["results"]
            report["machine"].setdefault("reruns", []).append(other["machine"])
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        Path(args.markdown).write_text(format_markdown(report))
        print(f"merged into {args.out} and {args.markdown}")
        return
    if args.quick:
        args.repeats, args.max_step_s = 2, 1.0
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    peers = all_peers()
    if args.peers:
        wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
        peers = {k: v for k, v in peers.items() if any(w in k for w in wanted)}
    machine = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "threads": {"torch": torch.get_num_threads(), "XLA_FLAGS": os.environ.get("XLA_FLAGS")},
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": _git_commit(),
        "versions": _versions(),
        "loadavg_start": list(os.getloadavg()),
        "gemm_gflops": {
            "float32": gemm_gflops(torch.float32),
            "float64": gemm_gflops(torch.float64),
        },
        "memory_gbs": memory_bandwidth_gbs(),
        "command": "python benchmarks/bench_circuit_peers.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)
        ),
    }
    started = time.perf_counter()
    results = []
    for cname in args.circuits.split(","):
        spec = CIRCUITS[cname]
        for peer in peers.values():
            print(f"{cname}: {peer.name}", flush=True)
            for row in bench_peer(peer, spec, batches, args.repeats, args.max_step_s, args.seed):
                row["circuit"] = cname
                if "ms_per_step" in row:
                    real = "float64" if row["precision"] == "complex128" else "float32"
                    itemsize = 16 if real == "float64" else 8
                    b = row["batch"]
                    row["flop_bound_ms"] = flop_bound_ms(spec, b, machine["gemm_gflops"][real])
                    row["bandwidth_bound_ms"] = bandwidth_bound_ms(
                        spec, b, machine["memory_gbs"], itemsize
                    )
                results.append(row)
                print("   ", _line(row), flush=True)
    machine["loadavg_end"] = list(os.getloadavg())
    machine["total_seconds"] = time.perf_counter() - started
    report = {"machine": machine, "results": results}
    if args.merge:
        previous = json.loads(Path(args.out).read_text())
        redone = {(r["circuit"], r["peer"]) for r in results}
        kept = [r for r in previous["results"] if (r["circuit"], r["peer"]) not in redone]
        previous["machine"].setdefault("reruns", []).append(machine)
        report = {"machine": previous["machine"], "results": kept + results}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.markdown).write_text(format_markdown(report))
    print(f"wrote {args.out} and {args.markdown}")


def _line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"batch {row['batch']}: cannot run: {row['error']}"
    extra = f" ({row['strategy']})" if "strategy" in row else ""
    ex = f" [extrapolated from {row['extrapolated_from_batch']}]" if row["extrapolation"] else ""
    return f"batch {row['batch']}: {row['ms_per_step']:.3g} ms{extra}{ex}"


def format_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = report["results"]
    lines = [
        "# Circuits against peer simulators: forward+backward per minibatch",
        "",
        f"{m['cpu_model']}, {m['cpu_count']} CPUs (shared), one thread per framework; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; GEMM "
        f"{m['gemm_gflops']['float32']:.0f} GFLOP/s float32, {m['gemm_gflops']['float64']:.0f} "
        f"float64; copy bandwidth {m['memory_gbs']:.1f} GB/s; commit {m['git_commit']}; "
        f"{m['total_seconds'] / 60:.0f} min.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Command: `{m['command']}`",
        "",
    ]
    for rerun in m.get("reruns", []):
        lines += [
            f"Rerun (rows replaced): `{rerun['command']}`, load average "
            f"{rerun['loadavg_start'][0]:.2f} → {rerun['loadavg_end'][0]:.2f}, commit "
            f"{rerun['git_commit']}.",
            "",
        ]
    lines += [
        "Task: loss = Σ_batch Σ_i ⟨Z_i⟩, gradients w.r.t. weights and inputs. ms/step: median "
        "wall time after warm-up (first call, with JIT compile, separately). 'vs qcalo': this "
        "peer's ms / qcalo's best ms at the same point (> 1: qcalo faster). Bounds: ideal flops "
        "at the GEMM rate, ideal layer-fused bytes at the copy bandwidth, in the row's precision.",
        "",
    ]
    header = [
        "circuit",
        "peer",
        "batch",
        "ms/step",
        "vs qcalo",
        "first call s",
        "flop bound ms",
        "bandwidth bound ms",
        "agrees",
        "note",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        if r["peer"].startswith("qcalo") and "ms_per_step" in r:
            key = (r["circuit"], r["batch"])
            best[key] = min(best.get(key, math.inf), r["ms_per_step"])
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['circuit']} | {r['peer']} | {r['batch']} | – | – | – | – | – | – | cannot run: {r['error']} |"
            )
            continue
        ref = best.get((r["circuit"], r["batch"]))
        note = []
        if "strategy" in r:
            note.append(f"strategy {r['strategy']}")
        if r["extrapolation"]:
            note.append(f"extrapolated: {r['extrapolation']}")
        if not r["does"].startswith("forward+backward"):
            note.append(r["does"])
        lines.append(
            "| "
            + " | ".join(
                [
                    r["circuit"],
                    r["peer"],
                    str(r["batch"]),
                    f"{r['ms_per_step']:.3g}",
                    f"{r['ms_per_step'] / ref:.3g}×" if ref else "–",
                    f"{r['first_call_s']:.2g}" if r.get("first_call_s") is not None else "–",
                    f"{r['flop_bound_ms']:.2g}",
                    f"{r['bandwidth_bound_ms']:.2g}",
                    f"{r['agrees_with_qcalo']:.1e}",
                    "; ".join(note),
                ]
            )
            + " |"
        )
    lines += ["", "## Summary", "", *summary(rows)]
    return "\n".join(lines) + "\n"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per circuit and batch: qcalo's best, the fastest peer doing the whole task, default.qubit."""
    out = [
        "| circuit | batch | qcalo best ms | fastest peer (full task) | its ms | peer / qcalo | default.qubit ms | default.qubit / qcalo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    points = sorted({(r["circuit"], r["batch"]) for r in rows}, key=lambda k: (k[0], k[1]))
    order = list(dict.fromkeys(r["circuit"] for r in rows))
    points.sort(key=lambda k: (order.index(k[0]), k[1]))
    for circuit, batch in points:
        timed = [
            r
            for r in rows
            if r["circuit"] == circuit and r["batch"] == batch and "ms_per_step" in r
        ]
        ours = [r for r in timed if r["peer"].startswith("qcalo")]
        peers = [
            r
            for r in timed
            if not r["peer"].startswith("qcalo") and r["does"].startswith("forward+backward")
        ]
        if not ours:
            continue
        best = min(ours, key=lambda r: r["ms_per_step"])
        fastest = min(peers, key=lambda r: r["ms_per_step"]) if peers else None
        dq = next((r for r in timed if r["peer"].startswith("pennylane default.qubit")), None)
        out.append(
            f"| {circuit} | {batch} | {best['ms_per_step']:.3g} ({best['peer']}, "
            f"{best.get('strategy', '')}) | {fastest['peer'] if fastest else '–'} | "
            f"{fastest['ms_per_step']:.3g} | {fastest['ms_per_step'] / best['ms_per_step']:.2g}× | "
            if fastest
            else f"| {circuit} | {batch} | {best['ms_per_step']:.3g} | – | – | – | "
        )
        out[-1] += (
            f"{dq['ms_per_step']:.3g} | {dq['ms_per_step'] / best['ms_per_step']:.3g}× |"
            if dq
            else "– | – |"
        )
    return out


if __name__ == "__main__":
    main()
