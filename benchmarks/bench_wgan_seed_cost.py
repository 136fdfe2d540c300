"""The seed's WGAN-GP experiment, timed: what 2000 epochs on 1000 photon showers cost in qcalo.

The seed prototype (FastCaloQ, docs/design/origin.md) trained its "BNReLUqINN" WGAN-GP
(noise 10 → 6-qubit × 2-layer circuit → 100 → 64 + BatchNorm → 368 voxels; MLP critic; λ = 20; Adam 1e-4,
β1 = 0.5) on 1000 events for 2000 epochs in ~120 minutes, with its circuit weights never
trained. Here :mod:`qcalo.models.wgan` with the seed's sizes (``fastcaloq_wgan``), the circuit
trained end to end through the torch statevector engine, is timed for a few epochs on 1000
simulated photon showers (2^8–2^16 MeV) and extrapolated to 2000 epochs. The frozen-circuit
ablation and the classical twin (``classical_wgan``) are timed the same way for comparison.

One epoch = the 1000 events in minibatches of ``--batch-size`` (100: the seed's batch size is
not documented; this is an assumption), each minibatch one :meth:`WGANGPStepper.step`:
``n_critic`` = 5 critic updates (fresh noise, same real batch, as Keras' WGAN-GP
``train_step``) then one generator update. A loop that takes a fresh real batch per critic
update (Gulrajani et al. Algorithm 1) does 1/n_critic of the generator updates per epoch;
the JSON records the update counts so either convention can be rescaled.

Usage::

    .venv/bin/python benchmarks/bench_wgan_seed_cost.py [--epochs 4] [--threads 1]

Wall time depends on what else the machine runs (the load average is recorded); the process
CPU time per epoch (``cpu_seconds_per_epoch``) is what one idle core would take.

Results: benchmarks/results/wgan_seed_cost.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

SEED_EPOCHS = 2000
SEED_MINUTES = 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["quantum", "quantum_frozen", "classical"],
        choices=["quantum", "quantum_frozen", "classical"],
    )
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "wgan_seed_cost.json")
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.geometry import load_geometry
    from qcalo.data.simulation import simulate
    from qcalo.models.wgan import (
        WGAN_PRESETS,
        GANPreprocessing,
        WGANGPStepper,
        build_wgan,
        validation_distance,
    )

    geometry = load_geometry("photons")
    energies = [2.0**k for k in range(8, 17)]
    data = simulate(
        "photon", energies, events_per_energy=-(-args.events // len(energies)), seed=args.seed
    )
    e_inc = torch.as_tensor(data.incident_energies[: args.events], dtype=torch.float64)
    showers = torch.as_tensor(data.showers[: args.events], dtype=torch.float64)
    pre = GANPreprocessing.fit(e_inc)
    x_all = pre.forward(showers, e_inc).float()
    c_all = pre.condition(e_inc).float()
    n = x_all.shape[0]
    batches_per_epoch = -(-n // args.batch_size)

    configs = {
        "quantum": WGAN_PRESETS["fastcaloq_wgan"],
        "quantum_frozen": WGAN_PRESETS["fastcaloq_wgan"].model_copy(
            update={"freeze_circuit": True}
        ),
        "classical": WGAN_PRESETS["classical_wgan"],
    }

    def epoch(stepper: WGANGPStepper, rng: torch.Generator) -> dict[str, float]:
        order = torch.randperm(n, generator=rng)
        out: dict[str, float] = {}
        for start in range(0, n, args.batch_size):
            idx = order[start : start + args.batch_size]
            out = stepper.step(x_all[idx], c_all[idx])
        return out

    load_before = os.getloadavg()
    variants = {}
    for name in args.variants:
        cfg = configs[name]
        model = build_wgan(cfg, geometry.n_voxels, seed=args.seed)
        rng = torch.Generator().manual_seed(args.seed)
        stepper = WGANGPStepper(model, rng=rng, layer_slices=geometry.layer_slices)
        core = model.generator.core_parameters()
        core_start = [p.detach().clone() for p in core]
        dist_start = validation_distance(
            model.generator, x_all, c_all, geometry.layer_slices, rng=rng
        )
        for _ in range(args.warmup):
            epoch(stepper, rng)
        load = os.getloadavg()
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(args.epochs):
            last = epoch(stepper, rng)
        seconds = (time.perf_counter() - t0) / args.epochs
        cpu_seconds = (time.process_time() - cpu0) / args.epochs
        dist_end = validation_distance(
            model.generator, x_all, c_all, geometry.layer_slices, rng=rng
        )
        moved = max(float((p.detach() - q).abs().max()) for p, q in zip(core, core_start))
        variants[name] = {
            "config": cfg.model_dump(mode="json"),
            "parameters": model.parameter_counts(),
            "seconds_per_epoch": seconds,
            "extrapolated_minutes_2000_epochs": seconds * SEED_EPOCHS / 60,
            "speedup_vs_seed": SEED_MINUTES * 60 / (seconds * SEED_EPOCHS),
            "cpu_seconds_per_epoch": cpu_seconds,
            "extrapolated_cpu_minutes_2000_epochs": cpu_seconds * SEED_EPOCHS / 60,
            "loadavg_at_start": load,
            "core_weights_max_change": moved,
            "validation_distance_start": dist_start,
            "validation_distance_after": dist_end,
            "last_step": last,
        }
        print(
            f"{name:15s} {seconds:6.2f} s/epoch → {seconds * SEED_EPOCHS / 60:6.1f} min for "
            f"{SEED_EPOCHS} epochs (seed ~{SEED_MINUTES} min); CPU {cpu_seconds:.2f} s/epoch → "
            f"{cpu_seconds * SEED_EPOCHS / 60:.1f} min; core moved {moved:.2e}; "
            f"load {load[0]:.1f}",
            flush=True,
        )
    load_after = os.getloadavg()

    result = {
        "benchmark": "wgan_seed_cost",
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "events": n,
        "batch_size": args.batch_size,
        "batch_size_note": "the seed's batch size is not documented; 100 is an assumption",
        "batches_per_epoch": batches_per_epoch,
        "critic_updates_per_epoch": batches_per_epoch * configs["quantum"].n_critic,
        "generator_updates_per_epoch": batches_per_epoch,
        "timed_epochs": args.epochs,
        "warmup_epochs": args.warmup,
        "seed_reference": {"epochs": SEED_EPOCHS, "minutes": SEED_MINUTES},
        "variants": variants,
        "note": (
            "validation_distance_* = mean 1-D W1 of E_tot/E_inc and the 5 layer fractions, "
            "generated vs the training events; after a few epochs it says nothing about "
            "quality, only that training runs"
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from qcalo.utils.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
