"""The trig conditioner (a product circuit in closed form) timed against the circuits it
replaces and the MLP, as one coupling conditioner of the photon twins' stage 1 and stage 2.

Each row: forward + backward of one conditioner at batch 512 (median ms over repeats, after a
warm-up), 1 torch thread. Conditioners, at the twins' widths: ``mlp`` (the classical twin's),
``hybrid`` (the hybrid twin's, linear CNOT entangler), ``hybrid product`` (the same without
entanglers: study 2's control) and ``trig`` (that control in closed form, the same function).

Usage::

    .venv/bin/python benchmarks/bench_trig.py [--out benchmarks/results/trig.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_limits import cpu_model, git_commit, median_time  # noqa: E402

from qcalo.models.blocks.conditioners import build_conditioner  # noqa: E402
from qcalo.quantum import CircuitSpec  # noqa: E402
from qcalo.utils.atomic import write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# (stage, inputs, outputs, MLP widths of the classical twin, hybrid widths, qubits)
STAGES = (("stage1", 2 + 1, 3 * 23, [48], [42], 6), ("stage2", 184 + 6, 184 * 23, [68], [60], 8))


def time_one(module: torch.nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(inputs).square().sum().backward()

    return median_time(step, repeats, warmup=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "trig.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    load_before = os.getloadavg()
    for stage, n_in, n_out, mlp_hidden, hybrid_hidden, qubits in STAGES:
        inputs = torch.randn(512, n_in, generator=torch.Generator().manual_seed(0))
        variants = {
            "mlp": ("mlp", mlp_hidden, None),
            "hybrid": ("hybrid", hybrid_hidden, CircuitSpec(n_qubits=qubits, n_layers=2)),
            "hybrid product": (
                "hybrid",
                hybrid_hidden,
                CircuitSpec(n_qubits=qubits, n_layers=2, entangler="none"),
            ),
            "trig": (
                "trig",
                hybrid_hidden,
                CircuitSpec(n_qubits=qubits, n_layers=2, entangler="none"),
            ),
        }
        for name, (kind, hidden, spec) in variants.items():
            torch.manual_seed(0)
            module = build_conditioner(kind, n_in, n_out, hidden, spec)
            torch.nn.init.normal_(module.head.weight, std=0.01)
            ms = 1e3 * time_one(module, inputs, args.repeats)
            params = sum(p.numel() for p in module.parameters())
            rows.append(
                {"stage": stage, "conditioner": name, "ms_fwd_bwd_b512": ms, "parameters": params}
            )
            print(f"{stage:<7} {name:<15} {ms:8.3f} ms   {params:>8,} parameters", flush=True)
    write_json(
        args.out,
        {
            "benchmark": "trig",
            "git_commit": git_commit(),
            "cpu_model": cpu_model(),
            "torch_threads": 1,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
