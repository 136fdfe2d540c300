"""Issue 13, study 3: how much a trained quantum stage-1 model loses with finite shots and noise.

The stage-1 models of ``configs/studies/stage1_g4.yaml`` are trained on the exact torch
simulator. Here every circuit of a trained run is moved to PennyLane
(:func:`qcalo.quantum.on_pennylane`) and evaluated, at inference only, with

* ``exact``: the torch simulator (what training saw),
* ``pennylane-exact``: ``default.qubit`` without shots (must equal ``exact``),
* ``shots-100`` / ``shots-1000`` / ``shots-10000``: ``default.qubit`` with finite shots (each
  ⟨Z⟩ estimated from that many measurements),
* ``depolarizing-0.001`` / ``depolarizing-0.01``: ``default.mixed`` with a depolarising channel
  of that probability after every gate on each of its wires, exact expectation values.

For each setting and each seed's run: the held-out stage-1 NLL (nats per shower) on the first
``--n-nll`` events of the run's own validation split of the training file (the same events and
dequantisation noise for every setting), and the separation powers of E_tot/E_inc and of the
layer energies of ``--n-sample`` showers generated for the incident energies of the first
events of the independent reference file (the same torch seed for every setting, so settings
differ only by the circuits). The table is mean ± std over the seeds' runs.

Usage::

    .venv/bin/python benchmarks/study_noise.py --study /work/studies/stage1_g4 \\
        --cell cell-006__family=quantum__conditioner=quantum__n_qubits=6__n_layers=2

Results: benchmarks/results/study_noise.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

SETTINGS: dict[str, dict] = {
    "exact": {},
    "pennylane-exact": {"device_name": "default.qubit"},
    "shots-100": {"device_name": "default.qubit", "shots": 100},
    "shots-1000": {"device_name": "default.qubit", "shots": 1000},
    "shots-10000": {"device_name": "default.qubit", "shots": 10000},
    "depolarizing-0.001": {"device_name": "default.mixed", "depolarizing": 0.001},
    "depolarizing-0.01": {"device_name": "default.mixed", "depolarizing": 0.01},
}
STAGE1_FEATURES = ("etot_einc", "e_layer_0", "e_layer_1", "e_layer_2", "e_layer_3", "e_layer_12")


def _evaluate(
    model: torch.nn.Module,
    val: tuple[torch.Tensor, torch.Tensor],
    sample_energies: torch.Tensor,
    reference_features,
    geometry,
    seed: int,
) -> dict[str, float]:
    from qcalo.data.features import compute_features
    from qcalo.evaluation.histograms import compare_features

    with torch.no_grad():
        torch.manual_seed(seed)
        nll = -model.log_prob(*val)["stage1"].double().mean().item()
        if len(sample_energies) == 0:  # --n-sample 0: the NLL only
            return {"nll_stage1": nll}
        torch.manual_seed(seed + 1)
        showers = model.sample(sample_energies).double().numpy()
    features = compute_features(sample_energies.double().numpy(), showers, geometry)
    comparisons = {
        c.name: c.separation_power for c in compare_features(features, reference_features, geometry)
    }
    return {"nll_stage1": nll, **{f"sp_{k}": comparisons[k] for k in STAGE1_FEATURES}}


def finished_runs(
    study: str | Path, cell_name: str, seeds: list[int] | None = None
) -> tuple[list[Path], dict, object]:
    """(finished seed folders of a study cell, their study task, its reference showers float32),
    only ``seeds`` when given; exits with one line when none has finished."""
    from qcalo.data.io import read_showers

    cell = Path(study) / "cells" / cell_name
    seed_dirs = sorted(d for d in cell.glob("seed-*") if (d / "DONE").is_file())
    if seeds:
        seed_dirs = [d for d in seed_dirs if int(d.name.split("-")[1]) in seeds]
    if not seed_dirs:
        raise SystemExit(f"{cell}: no finished seed runs; run the study first")
    task = json.loads((seed_dirs[0] / "DONE").read_text())["task"]
    return seed_dirs, task, read_showers(task["reference"], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", required=True, help="the stage-1 study's output folder")
    parser.add_argument("--cell", required=True, help="the cell whose seeds' runs are evaluated")
    parser.add_argument("--n-nll", type=int, default=1000)
    parser.add_argument("--n-sample", type=int, default=2000, help="0: the NLL only")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "study_noise.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from qcalo.data.features import compute_features
    from qcalo.data.io import read_showers
    from qcalo.quantum import on_pennylane
    from qcalo.training import load_run
    from qcalo.training.data import split_indices

    seed_dirs, task, reference = finished_runs(args.study, args.cell)
    n_sample = min(args.n_sample, len(reference.incident_energies))
    sample_energies = torch.as_tensor(reference.incident_energies[:n_sample].reshape(-1))
    reference_features = (
        compute_features(
            reference.incident_energies[:n_sample].reshape(-1).astype(np.float64),
            reference.showers[:n_sample].astype(np.float64),
            task["geometry"],
        )
        if n_sample
        else None
    )

    results: dict[str, dict[str, list[float]]] = {name: {} for name in args.settings}
    seconds: dict[str, list[float]] = {name: [] for name in args.settings}
    for seed_dir in seed_dirs:
        model, cfg = load_run(seed_dir / "run")
        data = read_showers(cfg.data.path, dtype=np.float32)
        _, val_idx = split_indices(len(data.incident_energies), cfg.validation_fraction, cfg.seed)
        idx = val_idx[: args.n_nll]
        val = (
            torch.as_tensor(data.incident_energies[idx].reshape(-1)),
            torch.as_tensor(data.showers[idx]),
        )
        for name in args.settings:
            options = SETTINGS[name]
            variant = model if not options else on_pennylane(model, seed=cfg.seed, **options)
            start = time.perf_counter()
            values = _evaluate(
                variant, val, sample_energies, reference_features, model.geometry, cfg.seed
            )
            seconds[name].append(time.perf_counter() - start)
            for key, value in values.items():
                results[name].setdefault(key, []).append(value)
            sp = f", SP E_tot/E_inc {values['sp_etot_einc']:.4f}" if len(values) > 1 else ""
            print(
                f"{seed_dir.name} {name:>20}: NLL {values['nll_stage1']:.4f}{sp} "
                f"({seconds[name][-1]:.0f} s)",
                flush=True,
            )

    summary = {
        name: {
            key: {
                "mean": float(np.mean(v)),
                "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                "values": v,
            }
            for key, v in metrics.items()
        }
        for name, metrics in results.items()
    }
    exact = results.get("exact", {}).get("nll_stage1")
    if exact:
        for name, metrics in results.items():
            delta = np.asarray(metrics["nll_stage1"]) - np.asarray(exact)
            summary[name]["nll_stage1_minus_exact"] = {
                "mean": float(delta.mean()),
                "std": float(delta.std(ddof=1)) if len(delta) > 1 else None,
            }
    out = {
        "what": "stage-1 quantum model evaluated with finite shots / depolarising noise at inference",
        "study": str(args.study),
        "cell": args.cell,
        "seeds": [d.name for d in seed_dirs],
        "n_nll_events": len(idx),
        "n_sample_events": n_sample,
        "settings": {name: SETTINGS[name] for name in args.settings},
        "results": summary,
        "seconds_per_run": {name: float(np.median(s)) for name, s in seconds.items()},
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "machine": platform.machine(),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"\n{'setting':>20} | NLL stage 1 | ΔNLL vs exact | SP E_tot/E_inc | SP E_layer_1  (mean ± std over {len(seed_dirs)} runs)"
    )
    for name in args.settings:
        r = summary[name]
        d = r.get("nll_stage1_minus_exact", {"mean": float("nan"), "std": None})

        def fmt(entry) -> str:
            return f"{entry['mean']:.4f} ± {entry['std'] or 0:.4f}"

        sp = (
            f" | {fmt(r['sp_etot_einc'])} | {fmt(r['sp_e_layer_1'])}" if "sp_etot_einc" in r else ""
        )
        print(f"{name:>20} | {fmt(r['nll_stage1'])} | {fmt(d)}{sp}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
