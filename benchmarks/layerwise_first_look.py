"""Joint vs layer-wise stage 2 (#32 item 2): train, generate, evaluate and record, per config and seed.

For each CONFIG (a shipped name or YAML) and seed: trains on ``--train-data`` for ``--epochs``
(skipped when the run directory already holds a finished run of that many epochs; resumed when
it holds an unfinished one; generated files and evaluations already there are reused), generates as many showers as the held-out reference at its incident
energies, runs ``qcalo evaluate --metrics hist,cls-high,cls-low,closure --run RUN`` against the
reference (the first ``--n-reference`` events of ``--reference-from``, never trained on), and
times one training step (forward + backward of the log-density, batch 512) and sampling (1,000
showers) of both layouts back to back in this process, so the two are timed under the same load.
Records the validation NLL per epoch, seconds per epoch, parameter counts, AUC high/low, the
E_tot/E_inc separation power and the stage-2 latent closure's worst KS per layer block: for the
layer-wise stage 2 the block of layer l is that layer's flow's latent; for the joint flow the
same positions are 368 latent coordinates whose permutations mix all layers, so only its overall
worst KS speaks about closure.

Usage (the short first look recorded in results/layerwise_first_look.json, one thread each)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/layerwise_first_look.py --workdir RUNS \\
        --train-data ../shared/data/g4_photons_dev.h5 \\
        --reference-from ../shared/data/g4_photons_dev2.h5 --epochs 3 --seeds 1

and the full study (30 epochs, the classical twin's schedule, three seeds)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/layerwise_first_look.py --workdir RUNS \\
        --train-data ../shared/data/g4_photons_dev.h5 \\
        --reference-from ../shared/data/g4_photons_dev2.h5 --epochs 30 --seeds 1 2 3 \\
        --out benchmarks/results/layerwise_30ep_3seeds.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcalo import api
from qcalo.utils.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent))
from bench_generation import git_commit  # noqa: E402

from qcalo.training.trainer import cpu_model  # noqa: E402


def _reference(source: Path, n: int, workdir: Path) -> Path:
    """The first ``n`` events of ``source``, written once to the work folder."""
    path = workdir / f"reference_first{n}.h5"
    if not path.is_file():
        data = api.read_showers(source, max_events=n)
        api.write_showers(path, data.incident_energies, data.showers)
    return path


def _train(name: str, data: Path, run: Path, seed: int, epochs: int) -> None:
    summary = run / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("epochs_run") == epochs:
        return
    resume = (run / "checkpoints" / "last.pt").is_file()
    api.train(name, data, run, seed=seed, epochs=epochs, resume=resume)


def _curve(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ("epoch", "val_nll", "val_nll_stage1", "val_nll_stage2", "train_nll_stage2", "seconds")
    return [{k: float(row[k]) for k in keys} for row in rows]


def _closure_per_layer(closure: dict[str, Any]) -> dict[str, Any]:
    geometry = api.load_geometry("photons")
    ks = np.asarray(closure["ks_statistic"])
    out: dict[str, Any] = {
        "dim": len(ks),
        "worst_ks": float(ks.max()),
        "median_ks": float(np.median(ks)),
        "n": closure.get("n"),
        "norm_chi2_p": closure["norm_chi2"].get("p_value"),
    }
    if len(ks) == geometry.n_voxels:  # stage 2: the latent blocks at each layer's voxel slots
        out["worst_ks_per_layer_block"] = {
            str(layer.id): float(ks[s].max())
            for layer, s in zip(geometry.layers, geometry.layer_slices, strict=True)
        }
    return out


def _timings(runs: dict[str, Path], reference: Path, repeats: int) -> dict[str, Any]:
    """ms per training step (batch 512, forward + backward) and per sampled shower (1,000), each
    layout in turn, ``repeats`` rounds interleaved so both see the same load."""
    data = api.read_showers(reference, max_events=1000)
    e_inc = torch.as_tensor(data.incident_energies, dtype=torch.float32)
    showers = torch.as_tensor(data.showers, dtype=torch.float32)
    models = {name: api.load_run(run, device="cpu")[0] for name, run in runs.items()}
    step: dict[str, list[float]] = {name: [] for name in models}
    sample: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            out = model.log_prob(e_inc[:512], showers[:512])
            (-out["total"].mean()).backward()
            step[name].append(1e3 * (time.perf_counter() - start))
            model.zero_grad(set_to_none=True)
            model.eval()
            torch.manual_seed(0)
            start = time.perf_counter()
            model.sample(e_inc)
            sample[name].append(1e3 * (time.perf_counter() - start) / len(e_inc))
    return {
        "train_step_ms_batch512": {k: float(np.median(v)) for k, v in step.items()},
        "sample_ms_per_shower_batch1000": {k: float(np.median(v)) for k, v in sample.items()},
        "repeats": repeats,
        "statistic": "median over interleaved repeats",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path, help="runs and generated files")
    parser.add_argument("--train-data", required=True, type=Path)
    parser.add_argument("--reference-from", required=True, type=Path)
    parser.add_argument("--n-reference", type=int, default=8100)
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "layerwise_photons"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--profile", default="fast", choices=["fast", "calochallenge"])
    parser.add_argument("--timing-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "layerwise_first_look.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "what": "joint vs layer-wise stage 2 (#32 item 2): short-budget first look, not a "
        "quality claim",
        "train_data": args.train_data.name,
        "reference": f"first {args.n_reference} events of {args.reference_from.name} "
        "(never trained on)",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "auc_profile": args.profile,
        "metrics": "hist,cls-high,cls-low,closure",
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "runs": {},
    }
    reference = _reference(args.reference_from, args.n_reference, args.workdir)
    last_seed_runs: dict[str, Path] = {}
    for seed in args.seeds:
        for name in args.configs:
            stem = Path(name).stem
            run = args.workdir / f"{stem}_s{seed}"
            _train(name, args.train_data, run, seed, args.epochs)
            last_seed_runs[stem] = run
            generated = args.workdir / f"gen_{stem}_s{seed}.h5"
            if not generated.is_file():
                api.generate(run, generated, energies_from=reference, seed=seed)
            start = time.perf_counter()
            evaluation = args.workdir / f"eval_{stem}_s{seed}"
            if (evaluation / "metrics.json").is_file():  # a rerun reuses finished evaluations
                metrics = json.loads((evaluation / "metrics.json").read_text())
            else:
                metrics = api.evaluate(
                    generated,
                    reference,
                    "photons",
                    evaluation,
                    metrics="hist,cls-high,cls-low,closure",
                    profile=args.profile,
                    run_dir=run,
                    seed=0,
                )
            summary = json.loads((run / "summary.json").read_text())
            curve = _curve(run)
            entry = {
                "config": name,
                "seed": seed,
                "stage2_layout": api.load_config(run / "config.yaml").model.stage2_layout,
                "parameter_counts": summary.get("parameter_counts"),
                "curve": curve,
                "seconds_per_epoch": [row["seconds"] for row in curve],
                "best_epoch": summary.get("best_epoch"),
                "auc_high": metrics["auc"]["high"],
                "auc_low": metrics["auc"]["low"],
                "n_generated": metrics["n_generated"],
                "n_reference": metrics["n_reference"],
                "sp_etot_einc": metrics["separation_power"]["etot_einc"],
                "closure": {
                    stage: _closure_per_layer(c) for stage, c in metrics["latent_closure"].items()
                },
                "evaluate_seconds": time.perf_counter() - start,
            }
            record["runs"][f"{stem}_s{seed}"] = entry
            c2 = entry["closure"]["stage2"]
            print(
                f"{stem} seed {seed}: val NLL stage 2 {[round(r['val_nll_stage2'], 1) for r in curve]}, "
                f"AUC high {entry['auc_high']:.3f} low {entry['auc_low']:.3f}, stage-2 worst KS "
                f"{c2['worst_ks']:.3f} per layer {c2['worst_ks_per_layer_block']}",
                flush=True,
            )
    record["timing"] = _timings(last_seed_runs, reference, args.timing_repeats)
    record["load_average_end"] = os.getloadavg()
    write_json(args.out, record)
    print(json.dumps({"written": str(args.out), "timing": record["timing"]}))


if __name__ == "__main__":
    main()
