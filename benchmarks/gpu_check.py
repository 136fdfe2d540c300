"""One prepared GPU check: training steps, generation and circuits on ``--device``, checked
against the CPU (the reference) and timed, in one call that fits a short device loan.

For each config (default: the shipped photon twins):

* **agreement**: the model built once (seed 0, preprocessing fitted on simulated showers),
  copied to the device; each stage's flow log-density on identical inputs on the device
  against the CPU's (worst relative difference per event), the latents, and the round trip
  x → z → x on the device;
* **training step**: median ms of one optimiser step (the kind's objective) at batch 512 on
  the device and on the CPU (compiled spline kernels), and the ratio;
* **generation**: ms/shower at batch 10,000 and 1 on both.

Circuits: the stage-2 circuit of the hybrid twin (8 qubits, 2 layers) and the seed's 6q×2L,
forward + backward at batch 1, 100 and 1,000 on both, values and gradients compared.

Everything is timed after a warm-up with ``torch.cuda.synchronize()``. The table goes to stdout
and JSON to ``--out`` with commit, device name, CPU and threads. Without CUDA the script runs
with ``--device cpu`` as a dry run of itself (both columns the CPU).

Usage (one call on a lent GPU)::

    python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_limits import build, cpu_model, git_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = {"log_prob_rel": 1e-4, "round_trip_abs": 1e-3, "circuit": 1e-5}


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_model(name: str, device: torch.device, sample: Any, quick: bool) -> dict[str, Any]:
    cpu = torch.device("cpu")
    row: dict[str, Any] = {"config": name}
    batch = 512
    energies = torch.as_tensor(sample.incident_energies[:batch], dtype=torch.float32)
    showers = torch.as_tensor(sample.showers[:batch], dtype=torch.float32)
    cfg, kind, model = build(name, sample, cpu)
    model.train()
    with torch.no_grad():
        model.log_prob(energies, showers)  # data-dependent initialisation on the CPU
    model.eval()
    # The flows on identical inputs (the dequantisation noise of model.log_prob is drawn on
    # each device's own RNG, so whole-model log-likelihoods differ by their noise).
    gen = torch.Generator().manual_seed(0)
    n_layers = model.geometry.n_layers
    flows = {
        "stage1": (model.stage1, torch.randn(256, 1, generator=gen)),
        "stage2": (model.stage2, torch.randn(256, 1 + n_layers, generator=gen)),
    }
    agrees = True
    for stage, (flow, context) in flows.items():
        x = torch.randn(256, flow.features, generator=gen)
        with torch.no_grad():
            reference = flow.to(cpu).log_prob(x, context)
            z_cpu, _ = flow(x, context)
            on_device = flow.to(device).log_prob(x.to(device), context.to(device)).cpu()
            z_dev, _ = flow(x.to(device), context.to(device))
            back = flow.inverse(z_dev, context.to(device)).cpu()
        rel = float(((on_device - reference).abs() / reference.abs().clamp_min(1.0)).max())
        row[f"{stage}_log_prob_max_rel_diff"] = rel
        row[f"{stage}_latent_max_abs_diff"] = float((z_dev.cpu() - z_cpu).abs().max())
        row[f"{stage}_round_trip_max_abs_diff"] = float((back - x).abs().max())
        agrees &= rel <= TOLERANCE["log_prob_rel"]
        agrees &= row[f"{stage}_round_trip_max_abs_diff"] <= TOLERANCE["round_trip_abs"]
    row["agrees"] = bool(agrees)
    model.to(cpu)

    for label, where in (("cpu", cpu), ("device", device)):
        cfg, kind, model = build(name, sample, where)
        model.train()
        objective = kind.objective(model, cfg.optimisation(steps_per_epoch=1000))
        e, s = energies.to(where), showers.to(where)
        counter = iter(range(10**9))

        def step(
            objective: Any = objective,
            e: torch.Tensor = e,
            s: torch.Tensor = s,
            counter: Any = counter,
        ) -> None:
            objective.train_step(e, s, epoch=0, step=next(counter))

        row[f"step_ms_{label}"] = 1e3 * timed(step, where, 3 if quick else 10)
        model.eval()
        for gen_batch in (10_000, 1):
            e_gen = torch.full((gen_batch,), 4096.0, device=where)

            def sample_once(model: Any = model, e_gen: torch.Tensor = e_gen) -> None:
                with torch.no_grad():
                    model.sample(e_gen)

            repeats = (2 if quick else 3) if gen_batch > 1 else (5 if quick else 20)
            seconds = timed(sample_once, where, repeats)
            row[f"generation_ms_per_shower_b{gen_batch}_{label}"] = 1e3 * seconds / gen_batch
    row["step_speedup"] = row["step_ms_cpu"] / row["step_ms_device"]
    return row


def check_circuits(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    from qcalo.quantum import CircuitSpec, QuantumLayer

    rows = []
    for qubits, layers in ((6, 2), (8, 2)):
        spec = CircuitSpec(n_qubits=qubits, n_layers=layers)
        torch.manual_seed(0)
        layer_cpu = QuantumLayer(spec, backend="torch")
        for batch in (1, 100, 1000):
            gen = torch.Generator().manual_seed(batch)
            inputs = torch.rand(batch, qubits, generator=gen) * 3.0
            results = {}
            for label, where in (("cpu", torch.device("cpu")), ("device", device)):
                layer = QuantumLayer(spec, backend="torch").to(where)
                layer.load_state_dict(layer_cpu.state_dict())
                x = inputs.to(where).requires_grad_(True)

                def run(layer: Any = layer, x: torch.Tensor = x) -> tuple[torch.Tensor, ...]:
                    out = layer(x)
                    grads = torch.autograd.grad(out.sum(), [x, *layer.parameters()])
                    return (out, *grads)

                values = [t.detach().cpu() for t in run()]
                seconds = timed(run, where, 5 if quick else 20)
                results[label] = (values, seconds)
            diff = max(
                float((a.double() - b.double()).abs().max())
                for a, b in zip(results["cpu"][0], results["device"][0])
            )
            rows.append(
                {
                    "circuit": f"{qubits}q x {layers}L",
                    "batch": batch,
                    "ms_cpu": 1e3 * results["cpu"][1],
                    "ms_device": 1e3 * results["device"][1],
                    "max_abs_diff": diff,
                    "agrees": diff <= TOLERANCE["circuit"],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--threads", type=int, default=2, help="CPU reference threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: rerun with --device cpu for a dry run", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    from qcalo.data.simulation import simulate
    from qcalo.utils.atomic import write_json
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    sample = simulate("photon", [2.0**k for k in range(8, 17)], events_per_energy=60, seed=0)
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_threads": args.threads,
        "loadavg_before": os.getloadavg(),
        "torch": torch.__version__,
        "tolerance": TOLERANCE,
        "models": [],
        "circuits": [],
    }
    for name in args.configs:
        try:
            row = check_model(name, device, sample, args.quick)
        except Exception as exc:  # a failing part must not lose the rest of a short loan
            row = {"config": name, "error": f"{type(exc).__name__}: {exc}"}
        result["models"].append(row)
        print(row, flush=True)
    try:
        result["circuits"] = check_circuits(device, args.quick)
    except Exception as exc:
        result["circuits"] = [{"error": f"{type(exc).__name__}: {exc}"}]
    for row in result["circuits"]:
        print(row, flush=True)
    result["loadavg_after"] = os.getloadavg()
    write_json(args.out, result)
    print(f"wrote {args.out}")
    ok = all(r.get("agrees", False) for r in result["models"] + result["circuits"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
