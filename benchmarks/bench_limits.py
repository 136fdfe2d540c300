"""The limit beside the measurement: training step and generation against their matrix products.

For each config (default: the shipped photon twins), at 1 and 2 torch threads:

* **training step**: one optimiser step as the trainer takes it (the kind's objective:
  log-likelihood, backward, gradient clipping, AdamW, schedule) at batch 512 of simulated
  photon showers, with the spline kernels ``eager`` (zuko's torch transform) and ``compiled``
  (qcalo's fused kernel) side by side;
* **generation**: ``model.sample`` of 10,000 showers (and batch 1) under ``torch.no_grad``;
* **matmul limit**: the same matrix products alone. Every ``mm``/``addmm``/``bmm``/``baddbmm``
  the step (or the generation pass) dispatches is recorded with its shapes, strides and dtype
  (a ``TorchDispatchMode``), then replayed on random tensors of those layouts and timed: the
  time the step would take if it did nothing but its matrix products (timed, not computed
  from flop counts).

Figures are medians over repeats; ``ratio`` = step / its matmul time (issue 29's target: ≤ 2
for the twins at 1 and 2 threads; generation ≤ 0.15 ms/shower at batch 10,000 on 2 threads and
≤ 2 ms/shower at batch 1). The JSON records the commit, load average, threads and CPU.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_limits.py \
        [--configs classical_photons hybrid_photons] [--threads 1 2] [--quick] \
        [--out benchmarks/results/limits.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
MATMULS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    from qcalo.training.trainer import cpu_model as trainer_cpu_model

    return trainer_cpu_model()


class MatmulRecorder(TorchDispatchMode):
    """Records (op, [(shape, stride, dtype) of tensor args], scalar kwargs) of every matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, list[Any], dict[str, Any]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in MATMULS:
            layout = [
                (tuple(a.shape), tuple(a.stride()), a.dtype) if isinstance(a, torch.Tensor) else a
                for a in args
            ]
            self.calls.append((func, layout, dict(kwargs)))
        return func(*args, **kwargs)


def replay(
    calls: list[tuple[Any, list[Any], dict[str, Any]]], device: torch.device
) -> Callable[[], None]:
    """A function that runs exactly the recorded matmuls on random tensors of the same layouts."""
    prepared = []
    for func, layout, kwargs in calls:
        args = []
        for item in layout:
            if isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], torch.dtype):
                shape, stride, dtype = item
                storage = (
                    max(1, sum((s - 1) * st for s, st in zip(shape, stride)) + 1) if shape else 1
                )
                base = torch.randn(storage, dtype=dtype, device=device)
                args.append(torch.as_strided(base, shape, stride))
            else:
                args.append(item)
        prepared.append((func, args, kwargs))

    def run() -> None:
        for func, args, kwargs in prepared:
            func(*args, **kwargs)

    return run


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name: str, sample: Any, device: torch.device) -> tuple[Any, Any, Any]:
    from qcalo.data.geometry import load_geometry
    from qcalo.models.registry import model_kind
    from qcalo.training import load_config

    cfg = load_config(name)
    geometry = load_geometry(cfg.geometry)
    kind = model_kind(cfg.model)
    stats = kind.fit(lambda: [sample], geometry, cfg.model)
    torch.manual_seed(0)
    model = kind.build(cfg.model, geometry, stats).to(device)
    return cfg, kind, model


def _step_function(
    objective: Any, energies: torch.Tensor, showers: torch.Tensor
) -> Callable[[], None]:
    counter = iter(range(10**9))

    def step() -> None:
        objective.train_step(energies, showers, epoch=0, step=next(counter))

    return step


def _sample_function(model: Any, energies: torch.Tensor) -> Callable[[], None]:
    def sample_once() -> None:
        with torch.no_grad():
            model.sample(energies)

    return sample_once


def bench_config(name: str, threads: int, args: argparse.Namespace, sample: Any) -> dict[str, Any]:
    from qcalo.models.blocks.spline import active_kernels, kernels

    torch.set_num_threads(threads)
    device = torch.device(args.device)
    batch = 512
    energies = torch.as_tensor(sample.incident_energies[:batch], dtype=torch.float32).to(device)
    showers = torch.as_tensor(sample.showers[:batch], dtype=torch.float32).to(device)
    row: dict[str, Any] = {"config": name, "threads": threads, "batch": batch}
    step_repeats = 5 if args.quick else 15
    gen_repeats = {10_000: 2 if args.quick else 5, 1: 20 if args.quick else 50}
    e_big = torch.full((10_000,), 4096.0, device=device)
    for mode in ("eager", "compiled"):
        with kernels(mode):
            cfg, kind, model = build(name, sample, device)
            model.train()
            objective = kind.objective(model, cfg.optimisation(steps_per_epoch=1000))
            step = _step_function(objective, energies, showers)
            step()  # data-dependent initialisation (ActNorm, context norm) happens here
            row[f"step_ms_{mode}"] = 1e3 * median_time(step, step_repeats)
            row[f"kernels_{mode}"] = active_kernels(energies)
            model.eval()
            big = _sample_function(model, e_big)
            seconds = median_time(big, gen_repeats[10_000], warmup=1)
            row[f"generation_ms_per_shower_b10000_{mode}"] = 1e3 * seconds / 10_000
            if mode != "compiled":
                continue
            model.train()
            recorder = MatmulRecorder()
            with recorder:
                step()
            row["step_matmuls"] = len(recorder.calls)
            row["step_matmul_ms"] = 1e3 * median_time(replay(recorder.calls, device), step_repeats)
            row["step_ratio"] = row["step_ms_compiled"] / row["step_matmul_ms"]
            row["step_ratio_eager"] = row["step_ms_eager"] / row["step_matmul_ms"]
            model.eval()
            recorder = MatmulRecorder()
            with recorder:
                big()
            matmul = median_time(replay(recorder.calls, device), gen_repeats[10_000], warmup=1)
            row["generation_matmul_ms_per_shower_b10000"] = 1e3 * matmul / 10_000
            row["generation_ratio_b10000"] = seconds / matmul
            single = _sample_function(model, torch.full((1,), 4096.0, device=device))
            row["generation_ms_per_shower_b1"] = 1e3 * median_time(single, gen_repeats[1])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "limits.json"))
    args = parser.parse_args(argv)

    from qcalo.data.simulation import simulate
    from qcalo.utils.atomic import write_json
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    sample = simulate("photon", [2.0**k for k in range(8, 17)], events_per_energy=60, seed=0)
    load_before = os.getloadavg()
    rows = []
    for name in args.configs:
        for threads in args.threads:
            row = bench_config(name, threads, args, sample)
            rows.append(row)
            print(
                f"{name:<20} {threads} thr  step {row['step_ms_compiled']:7.1f} ms "
                f"(eager {row['step_ms_eager']:7.1f})  matmuls {row['step_matmul_ms']:6.1f} ms  "
                f"ratio {row['step_ratio']:.2f} (eager {row['step_ratio_eager']:.2f})  "
                f"gen {row['generation_ms_per_shower_b10000_compiled']:.3f} ms/shower b10k "
                f"(eager {row['generation_ms_per_shower_b10000_eager']:.3f}, matmuls "
                f"{row['generation_matmul_ms_per_shower_b10000']:.3f}), "
                f"b1 {row['generation_ms_per_shower_b1']:.2f} ms",
                flush=True,
            )
    result = {
        "benchmark": "limits",
        "git_commit": git_commit(),
        "device": args.device,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "targets": {
            "step_ratio": "<= 2 at 1 and 2 threads (twins)",
            "generation_ms_per_shower_b10000": "<= 0.15 on 2 threads",
            "generation_ms_per_shower_b1": "<= 2",
        },
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
