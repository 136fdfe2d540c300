"""Which circuit strategy is fastest, by measurement, for the circuits of the shipped models:
inference (no graph: sampling) and the training step (forward + backward to inputs and weights).

Circuits: Y embedding, Rot rotations, a linear CNOT chain, ⟨Z_i⟩ (the hybrid twin's conditioner
circuits, and the 6q×2L of issue 29), 2 layers, 4 to 10 qubits, batch 1 to 1,024, 1 thread. Every
candidate strategy is timed in the same loop (interleaved, so a passing load hits all alike);
the table gives the median CPU time of the calling thread (``time.thread_time``: on a shared,
loaded machine a better measure of the work than wall time) and the wall median.

* inference: ``unitary`` (the cached matrix, :meth:`TorchCircuit.frozen_matrix`; the NumPy
  small-batch route up to ``NUMPY_INFERENCE_MAX_BATCH``), ``gates``, ``small``, and what
  ``auto`` runs;
* training: ``unitary`` (6 qubits and below: the cost model's choice), ``gates``, ``small``:
  the evidence for or against a fixed rule "``small`` when n ≤ 8 and batch·2^n ≤ 8192".

    python benchmarks/bench_circuit_inference.py [--out benchmarks/results/circuits_inference.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from qcalo.quantum import CircuitSpec, QuantumLayer  # noqa: E402
from qcalo.quantum.torch_backend import choose_strategy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _spec(n: int) -> CircuitSpec:
    return CircuitSpec(
        n_qubits=n,
        n_layers=2,
        embedding="Y",
        rotations="rot",
        entangler="linear",
        entangler_gate="cnot",
        measurements=("z",),
    )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=RESULTS.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure(n: int, batch: int, grad: bool, strategies: list[str], rounds: int) -> dict:
    spec = _spec(n)
    x = (torch.rand(batch, n, generator=torch.Generator().manual_seed(n)) * 2 - 1) * 3.14
    steps = {}
    for strategy in strategies:
        layer = QuantumLayer(spec, seed=0, strategy=strategy)
        inputs = x.clone().requires_grad_(grad)

        def step(layer: QuantumLayer = layer, inputs: torch.Tensor = inputs) -> None:
            if grad:
                layer.rotation_weights.grad = None
                inputs.grad = None
                layer(inputs).sum().backward()
            else:
                with torch.no_grad():
                    layer(inputs)

        steps[strategy] = step
    for step in steps.values():
        step()
        step()
    cpu: dict[str, list[float]] = {s: [] for s in strategies}
    wall: dict[str, list[float]] = {s: [] for s in strategies}
    for _ in range(rounds):
        for strategy, step in steps.items():
            t0, w0 = time.thread_time(), time.perf_counter()
            step()
            cpu[strategy].append(1e3 * (time.thread_time() - t0))
            wall[strategy].append(1e3 * (time.perf_counter() - w0))
    return {
        "n_qubits": n,
        "batch": batch,
        "mode": "train" if grad else "infer",
        "auto": choose_strategy(spec, batch, grad=grad),
        "cpu_ms_median": {s: statistics.median(v) for s, v in cpu.items()},
        "wall_ms_median": {s: statistics.median(v) for s, v in wall.items()},
        "fastest_cpu": min(cpu, key=lambda s: statistics.median(cpu[s])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[4, 6, 8, 10])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--out", default=str(RESULTS / "circuits_inference.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    for grad in (False, True):
        for n in args.qubits:
            for batch in args.batches:
                strategies = ["unitary", "gates", "small"]
                rounds = 60 if batch <= 64 else 15
                if n >= 10 and batch >= 256:
                    rounds = 5
                row = measure(n, batch, grad, strategies, rounds)
                rows.append(row)
                cells = "  ".join(f"{s} {row['cpu_ms_median'][s]:.3f}" for s in strategies)
                rule = "small" if n <= 8 and batch * 2**n <= 8192 else "-"
                print(
                    f"{row['mode']:5s} {n:2d}q b{batch:<5d} auto={row['auto']:8s} "
                    f"fastest={row['fastest_cpu']:8s} rule={rule:6s} {cells} (cpu ms)",
                    flush=True,
                )
    result = {
        "benchmark": "circuits_inference",
        "git_commit": _commit(),
        "torch_threads": 1,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu": _cpu(),
        "torch": torch.__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
