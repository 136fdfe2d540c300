"""Peak memory of one forward+backward of a probability circuit at 16 and 20 qubits.

Each case runs in a fresh subprocess (peak RSS = resource.getrusage ru_maxrss, minus the RSS
after imports and the layer's construction; glibc's mmap threshold set low so that freed blocks
go back to the system and RSS follows the live tensors): the autograd path ("gates", every intermediate state
kept) against the adjoint path ("adjoint", final state only), at two depths, so that growth with
depth shows. Writes benchmarks/results/circuit_memory.json and .md with commit, load and threads.

    python benchmarks/bench_circuit_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = r"""
import json, resource, sys, time
import psutil, torch
torch.set_num_threads(1)
from qcalo.quantum import CircuitSpec, QuantumLayer
n, layers, batch, strategy = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = CircuitSpec(n_qubits=n, n_layers=layers, embedding="Y", reupload=True, rotations="rot",
                   entangler="linear", entangler_gate="cnot", measurements=("probs",))
layer = QuantumLayer(spec, seed=0, strategy=strategy)
x = (torch.rand(batch, n, generator=torch.Generator().manual_seed(1)) * 2 - 1) * torch.pi
x.requires_grad_(True)
weights = torch.randn(batch, spec.dim, generator=torch.Generator().manual_seed(2))
base = psutil.Process().memory_info().rss
start = time.perf_counter()
(layer(x) * weights).sum().backward()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base_mib": base / 2**20, "peak_mib": peak / 2**20,
                  "step_mib": (peak - base) / 2**20, "seconds": seconds,
                  "grad_norm": float(layer.rotation_weights.grad.norm())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 qubits only")
    args = parser.parse_args()
    cases = [(16, layers, 8, s) for layers in (2, 6) for s in ("gates", "adjoint")]
    if not args.quick:
        cases += [(20, layers, 4, s) for layers in (2, 4) for s in ("gates", "adjoint")]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load_start = list(os.getloadavg())
    rows = []
    for n, layers, batch, strategy in cases:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(layers), str(batch), strategy],
            capture_output=True,
            text=True,
            check=True,
            # Big blocks straight from mmap and back on free: peak RSS then measures live
            # tensors, not glibc's cached free heap (whose fragmentation grows with step count).
            env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
        )
        row = {"n_qubits": n, "n_layers": layers, "batch": batch, "strategy": strategy}
        row.update(json.loads(out.stdout.strip().splitlines()[-1]))
        row["state_mib"] = batch * 2**n * 8 / 2**20  # one complex64 (B, 2^n) state
        rows.append(row)
        print(
            f"{n}q×{layers}L batch {batch} {strategy:8s} peak {row['peak_mib']:8.0f} MiB "
            f"(+{row['step_mib']:7.0f} MiB over the set-up = {row['step_mib'] / row['state_mib']:5.1f} states) "
            f"{row['seconds']:6.1f} s",
            flush=True,
        )
    report = {
        "machine": {
            "commit": commit,
            "torch_threads": 1,
            "cpu_count": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "note": "circuit: embedding Y, re-uploading, Rot, linear CNOT, probs; complex64; "
            "loss = Σ probs·w with fixed random w; MALLOC_MMAP_THRESHOLD_=65536 so that RSS follows live tensors; step_mib = peak RSS − RSS after set-up; "
            "state_mib = one (batch, 2^n) complex64 state",
        },
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "circuit_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Circuit forward+backward peak memory (probabilities, re-uploading, complex64)",
        "",
        f"commit {commit}, 1 torch thread, load {load_start[0]:.2f} → {report['machine']['loadavg_end'][0]:.2f}.",
        "",
        "| qubits | layers | batch | strategy | peak RSS MiB | step MiB | step / one state | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_qubits']} | {r['n_layers']} | {r['batch']} | {r['strategy']} | {r['peak_mib']:.0f} | "
            f"{r['step_mib']:.0f} | {r['step_mib'] / r['state_mib']:.1f} | {r['seconds']:.1f} |"
        )
    lines += ["", report["machine"]["note"], ""]
    (RESULTS / "circuit_memory.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
