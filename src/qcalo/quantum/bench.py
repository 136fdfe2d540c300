"""Benchmark: forward+backward time per minibatch of the circuit backends.

Why the torch backend is built as it is: docs/design/circuits.md#simulator-speed.

For each circuit, backend and batch size: warm-up calls, then the median wall time of
``repeats`` steps of ``layer(x).sum().backward()`` with gradients w.r.t. weights and inputs.
Points whose single step would take longer than ``max_step_s`` (PennyLane at 12 qubits, and
lightning's adjoint method, which loops over the batch) are timed at the largest batch that
fits and extrapolated with an affine fit (fixed cost per call + cost per sample) through the
smallest and that batch; such rows say so (``extrapolated_from_batch``, ``extrapolation``).

Torch rows also give ``ratio_to_flop_bound``: the step time over its floating-point bound, the
ideal gate-by-gate flop count (:func:`qcalo.quantum.torch_backend.ideal_flops`, forward plus
adjoint-method backward, times the batch) divided by this machine's measured GEMM rate in the
circuit's real precision at the same thread count (``machine.gemm_gflops``, measured in the
same run, so load affects both alike). ``ratio_to_bandwidth_bound`` does the same with memory
traffic: ideal layer-fused bytes (:func:`qcalo.quantum.torch_backend.ideal_bytes`) times the batch
over the bandwidth of a large torch copy (``machine.memory_gbs``); single-qubit gates on a big
batch are memory-bound, so there this is the bound that matters.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qcalo.errors import ConfigError
from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.spec import CircuitSpec
from qcalo.quantum.torch_backend import ideal_bytes, ideal_flops
from qcalo.utils import atomic_path, progress

#: backend label -> QuantumLayer keyword arguments.
BACKENDS: dict[str, dict[str, Any]] = {
    "torch": {"backend": "torch", "dtype": torch.complex64},
    "torch-c128": {"backend": "torch", "dtype": torch.complex128},
    "default.qubit": {
        "backend": "pennylane",
        "device_name": "default.qubit",
        "diff_method": "backprop",
        "dtype": torch.complex128,
    },
    "lightning.qubit": {
        "backend": "pennylane",
        "device_name": "lightning.qubit",
        "diff_method": "adjoint",
        "dtype": torch.complex128,
    },
}
DEFAULT_BACKENDS = ("torch", "torch-c128", "default.qubit", "lightning.qubit")

#: The two circuits of the issue: the seed's 6q×2L and a 12q×4L re-uploading circuit.
DEFAULT_CIRCUITS = (
    CircuitSpec(
        n_qubits=6,
        n_layers=2,
        embedding="Y",
        rotations="rot",
        entangler="linear",
        entangler_gate="cnot",
        measurements=("z",),
    ),
    CircuitSpec(
        n_qubits=12,
        n_layers=4,
        embedding="Y",
        reupload=True,
        rotations="rot",
        entangler="linear",
        entangler_gate="cnot",
        measurements=("z",),
    ),
)


@dataclass
class _Timing:
    wall_ms: float
    cpu_ms: float
    repeats: int


def _time_steps(layer: QuantumLayer, batch: int, repeats: int, warmup: int, seed: int) -> _Timing:
    gen = torch.Generator().manual_seed(seed)
    real = layer.rotation_weights.dtype
    x = (torch.rand((batch, layer.spec.n_qubits), generator=gen, dtype=real) * 2 - 1) * torch.pi
    x.requires_grad_(True)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return time_step(step, repeats, warmup)


def time_step(step: Any, repeats: int, warmup: int = 1) -> _Timing:
    """Median wall and process-CPU milliseconds of ``step()`` over ``repeats`` calls, after
    ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        walls.append((time.perf_counter() - w0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
    return _Timing(statistics.median(walls), statistics.median(cpus), repeats)


def _extrapolate(measured: dict[int, _Timing], at: int, batch: int) -> tuple[float, float, str]:
    """Time at ``batch`` from timings at smaller batches: affine fit t = a + c·b through the smallest
    and the largest measured batch (fixed per-call cost plus per-sample cost), else proportional."""
    smallest = min(measured)
    if smallest < at:
        lo, hi = measured[smallest], measured[at]
        slope = (hi.wall_ms - lo.wall_ms) / (at - smallest)
        cpu_slope = (hi.cpu_ms - lo.cpu_ms) / (at - smallest)
        if slope > 0 and cpu_slope > 0:
            return (
                hi.wall_ms + slope * (batch - at),
                hi.cpu_ms + cpu_slope * (batch - at),
                f"affine fit through batches {smallest} and {at}",
            )
    t = measured[at]
    return t.wall_ms * batch / at, t.cpu_ms * batch / at, f"proportional to batch {at}"


def gemm_gflops(dtype: torch.dtype, size: int = 512, repeats: int = 5) -> float:
    """Measured matrix-multiply rate (GFLOP/s, median of ``repeats``) at torch's current threads."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Measured memory bandwidth (GB/s, median of ``repeats``): a large torch copy, read + write.

    The buffers (``megabytes`` each) are far larger than the caches, so this is the DRAM rate
    a memory-bound step can reach at torch's current threads.
    """
    count = megabytes * 2**20 // 4
    src = torch.ones(count, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * count * 4 / statistics.median(times) / 1e9


def bandwidth_bound_ms(spec: CircuitSpec, batch: int, gbs: float, itemsize: int = 8) -> float:
    """Memory-bandwidth bound of one forward+backward step: ideal bytes × batch at ``gbs``."""
    return sum(ideal_bytes(spec, itemsize)) * batch / (gbs * 1e9) * 1e3


def flop_bound_ms(spec: CircuitSpec, batch: int, gflops: float) -> float:
    """Floating-point bound of one forward+backward step: ideal flops × batch at ``gflops``."""
    return sum(ideal_flops(spec)) * batch / (gflops * 1e9) * 1e3


def _machine(threads: int) -> dict[str, Any]:
    import pennylane as qml

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pennylane": qml.__version__,
        "torch_threads": threads,
        "loadavg_start": list(os.getloadavg()),
    }


def bench_circuits(
    out: str | os.PathLike[str] | None = None,
    *,
    repeats: int = 5,
    batches: Sequence[int] = (1, 100, 1000),
    quick: bool = False,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    circuits: Sequence[CircuitSpec] = DEFAULT_CIRCUITS,
    threads: int | None = 1,
    max_step_s: float = 5.0,
    seed: int = 0,
    markdown: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Time forward+backward per minibatch; returns ``{"machine": {...}, "results": [...]}``.

    Each result row: backend, n_qubits, n_layers, reupload, batch, ms_per_step (median wall
    time), cpu_ms_per_step (median process CPU time), samples_per_s, repeats,
    extrapolated_from_batch (None when measured at ``batch``), ratio_to_default_qubit
    (default.qubit ms / this ms, when both exist). ``quick`` uses 2 repeats and
    ``max_step_s=0.5`` (more extrapolation). ``threads`` sets torch's intra-op threads (None
    leaves it). Writes JSON to ``out`` and a Markdown table to ``markdown`` when given.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(
            f"bench circuits: unknown backend(s) {', '.join(unknown)}; expected some of {', '.join(BACKENDS)}"
        )
    if not batches or any(int(b) < 1 for b in batches):
        raise ConfigError(
            f"bench circuits: batches {list(batches)} invalid; expected positive integers"
        )
    if repeats < 1:
        raise ConfigError(f"bench circuits: repeats={repeats} invalid; expected ≥ 1")
    if quick:
        repeats, max_step_s = min(repeats, 2), min(max_step_s, 0.5)
    if threads is not None:
        torch.set_num_threads(threads)
    machine = _machine(torch.get_num_threads())
    gflops = {
        "float32": gemm_gflops(torch.float32),
        "float64": gemm_gflops(torch.float64),
    }
    machine["gemm_gflops"] = gflops
    machine["memory_gbs"] = memory_bandwidth_gbs()
    results: list[dict[str, Any]] = []
    jobs = [(spec, name) for spec in circuits for name in backends]
    started = time.perf_counter()
    for spec, name in progress(jobs, desc="bench circuits", unit="config"):
        layer = QuantumLayer(spec, seed=seed, **BACKENDS[name])
        warmup = 2 if BACKENDS[name]["backend"] == "torch" else 1
        probe_batch, probe_ms = 1, _time_steps(layer, 1, 1, warmup, seed).wall_ms
        measured: dict[int, _Timing] = {}
        for batch in sorted({int(b) for b in batches}):
            # Grow the batch while one step stays under max_step_s (a step at k× the batch
            # costs at most about k× as much), then time `repeats` steps there.
            while probe_batch < batch and max_step_s * 1e3 / probe_ms >= 1.5:
                probe_batch = min(batch, int(probe_batch * max_step_s * 1e3 / probe_ms))
                probe_ms = _time_steps(layer, probe_batch, 1, 0, seed).wall_ms
            at = min(probe_batch, batch)
            if at not in measured:
                n_rep = max(1, min(repeats, int(4 * max_step_s * 1e3 // max(probe_ms, 1e-3))))
                measured[at] = _time_steps(
                    layer, at, n_rep, 0 if at == probe_batch else warmup, seed
                )
            timing = measured[at]
            wall_ms, cpu_ms, how = timing.wall_ms, timing.cpu_ms, None
            if at != batch:
                wall_ms, cpu_ms, how = _extrapolate(measured, at, batch)
            bound = bandwidth = None
            if BACKENDS[name]["backend"] == "torch":
                real = "float64" if BACKENDS[name]["dtype"] == torch.complex128 else "float32"
                bound = flop_bound_ms(spec, batch, gflops[real])
                itemsize = 16 if real == "float64" else 8
                bandwidth = bandwidth_bound_ms(spec, batch, machine["memory_gbs"], itemsize)
            results.append(
                {
                    "backend": name,
                    "n_qubits": spec.n_qubits,
                    "n_layers": spec.n_layers,
                    "reupload": spec.reupload,
                    "batch": batch,
                    "ms_per_step": wall_ms,
                    "cpu_ms_per_step": cpu_ms,
                    "samples_per_s": batch / (wall_ms / 1e3),
                    "repeats": timing.repeats,
                    "extrapolated_from_batch": None if at == batch else at,
                    "extrapolation": how,
                    "flop_bound_ms": bound,
                    "ratio_to_flop_bound": wall_ms / bound if bound else None,
                    "bandwidth_bound_ms": bandwidth,
                    "ratio_to_bandwidth_bound": wall_ms / bandwidth if bandwidth else None,
                    "circuit": spec.model_dump(mode="json"),
                    "options": {k: str(v) for k, v in BACKENDS[name].items()},
                }
            )
    reference = {
        (r["n_qubits"], r["n_layers"], r["reupload"], r["batch"]): r["ms_per_step"]
        for r in results
        if r["backend"] == "default.qubit"
    }
    for r in results:
        ref = reference.get((r["n_qubits"], r["n_layers"], r["reupload"], r["batch"]))
        r["ratio_to_default_qubit"] = ref / r["ms_per_step"] if ref else None
    machine["loadavg_end"] = list(os.getloadavg())
    machine["total_seconds"] = time.perf_counter() - started
    machine["note"] = (
        "ms_per_step: median wall time of forward+backward (gradients w.r.t. weights and inputs) per minibatch "
        "after warm-up; rows with extrapolated_from_batch took longer than max_step_s per step and were timed at "
        "that smaller batch, then extrapolated as stated in 'extrapolation' (an affine fit: fixed cost per call plus "
        "a cost per sample; lightning's adjoint method loops over samples, default.qubit broadcasting is close to "
        "affine at these sizes). "
        "The machine may be shared: see loadavg and compare cpu_ms_per_step. "
        "flop bound: ideal gate-by-gate flops (forward + adjoint backward) × batch at the measured GEMM rate "
        "(gemm_gflops, same threads); 'vs flop bound' = ms_per_step / that bound. "
        "bandwidth bound: ideal layer-fused bytes (ideal_bytes: each layer reads and writes the state once "
        "forward, state and cotangent once each backward) × batch at the measured copy bandwidth "
        "(memory_gbs); 'vs bandwidth bound' = ms_per_step / that bound (meaningful where the states "
        "exceed the caches: big batches)."
    )
    report = {"machine": machine, "results": results}
    table = format_table(report)
    if verbose:
        print(table)
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text(format_markdown(report))
    return report


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        circuit = f"{r['n_qubits']}q×{r['n_layers']}L{' reupload' if r['reupload'] else ''}"
        ratio = r["ratio_to_default_qubit"]
        note = f"extrapolated: {r['extrapolation']}" if r["extrapolated_from_batch"] else ""
        bound = r.get("ratio_to_flop_bound")
        bandwidth = r.get("ratio_to_bandwidth_bound")
        rows.append(
            [
                circuit,
                r["backend"],
                str(r["batch"]),
                f"{r['ms_per_step']:.3g}",
                f"{r['cpu_ms_per_step']:.3g}",
                f"{r['samples_per_s']:.3g}",
                f"{ratio:.3g}×" if ratio else "–",
                f"{bound:.3g}×" if bound else "–",
                f"{bandwidth:.3g}×" if bandwidth else "–",
                note,
            ]
        )
    return rows


HEADER = [
    "circuit",
    "backend",
    "batch",
    "ms/step",
    "cpu ms/step",
    "samples/s",
    "vs default.qubit",
    "vs flop bound",
    "vs bandwidth bound",
    "note",
]


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of a `bench_circuits` report."""
    rows = [HEADER] + _rows(report)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    m = report["machine"]
    lines.append(
        f"torch threads: {m['torch_threads']}; load average {m['loadavg_start'][0]:.2f} → {m['loadavg_end'][0]:.2f}; total {m['total_seconds']:.0f} s"
    )
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """Markdown table of a `bench_circuits` report."""
    m = report["machine"]
    lines = [
        "# Circuit backends: forward+backward per minibatch",
        "",
        f"{m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} thread(s)), PennyLane {m['pennylane']}; "
        f"load average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; "
        + (
            f"GEMM {m['gemm_gflops']['float32']:.0f} GFLOP/s float32, {m['gemm_gflops']['float64']:.0f} float64"
            + (f"; copy bandwidth {m['memory_gbs']:.1f} GB/s." if "memory_gbs" in m else ".")
            if "gemm_gflops" in m
            else ""
        ),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    lines += ["", m["note"], ""]
    return "\n".join(lines)
