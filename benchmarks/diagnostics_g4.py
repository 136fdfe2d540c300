"""Why does the classifier tell the built-in simulator from Geant4? Diagnostics per energy and feature.

Reference: ``../shared/data/g4_photons_dev2.h5`` (Geant4 photons, 9 energies 2^8–2^16 MeV,
4,500 each). Two "generated" samples are evaluated against it with ``qcalo evaluate --metrics
cls-high,diagnostics`` (the API, in memory, fast profile):

* ``simulator``: the built-in photon simulator (``qcalo.data.simulation.simulate``) at the same
  incident energies, ``--events-per-energy`` each (as ``benchmarks/compare_simulator_g4.py``);
* ``geant4_control``: the independent Geant4 file ``g4_photons_dev.h5``, the null case: every
  per-energy AUC should be ≈ 0.5 and every separation power near its finite-sample floor.

The reference and the control are subsampled (seeded) to ``--events-per-energy`` per energy
(default: all 4,500) so that both samples have equal N. Prints one table per sample (AUC per
E_inc, separation powers of E_tot/E_inc and of the worst layer energy against their floors,
most important features) and the feature ranking; writes
``benchmarks/results/diagnostics_simulator_vs_g4.json`` (commit, load average, thread count,
the diagnostics blocks, and the cost of the diagnostics against that of cls-high) and the
per-energy figure of the simulator beside it.

Usage::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/diagnostics_g4.py
        [--events-per-energy 4500] [--seed 0] [--work /tmp/qcalo_diagnostics_g4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

SHARED = Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data"
RESULT = REPO / "benchmarks" / "results" / "diagnostics_simulator_vs_g4.json"


def git_dirty() -> bool:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return True
    return bool(out.strip())


def per_energy_subsample(data, n_per_energy: int, seed: int):
    """The first ``n_per_energy`` showers of each incident energy after a seeded shuffle."""
    import numpy as np

    from qcalo.data.io import ShowerData

    rng = np.random.default_rng(seed)
    energies = np.asarray(data.incident_energies).reshape(-1)
    keep = []
    for e in np.unique(energies):
        rows = np.flatnonzero(energies == e)
        if len(rows) < n_per_energy:
            raise SystemExit(
                f"only {len(rows)} showers at {e:g} MeV; pass --events-per-energy ≤ {len(rows)}"
            )
        keep.append(rng.permutation(rows)[:n_per_energy])
    index = np.sort(np.concatenate(keep))
    return ShowerData(energies[index], np.asarray(data.showers)[index])


def table(name: str, block: dict, cls_high: dict) -> str:
    lines = [
        f"{name}: AUC high over all energies {block['overall']['auc']:.3f} ± "
        f"{block['overall']['auc_error']:.3f} ({block['auc_profile']} profile, "
        f"N={block['overall']['n_per_sample']}; cls-high {cls_high['auc']:.3f})",
        f"{'E_inc':>10} {'N':>5} {'AUC high':>14} {'SP Etot/Einc':>18} {'worst layer SP':>28}  "
        "top features (AUC drop)",
    ]
    for g in block["energy_groups"]:
        if "auc" not in g:
            lines.append(f"{g['label']:>10} skipped: {g['skipped']}")
            continue
        sp, floor = g["separation_power"], g["separation_power_floor"]
        layers = {k: v for k, v in sp.items() if k != "etot_einc"}
        worst = max(layers, key=lambda k: layers[k])
        tops = ", ".join(f"{t['feature']} ({t['auc_drop']:.3f})" for t in g["top_features"])
        lines.append(
            f"{g['label']:>10} {g['n_per_sample']:>5} {g['auc']:>7.3f} ± {g['auc_error']:.3f} "
            f"{sp['etot_einc']:>8.4f} ({floor['etot_einc']:.4f}) "
            f"{worst:>11} {layers[worst]:.4f} ({floor[worst]:.4f})  {tops}"
        )
    ranking = block["feature_ranking"]
    sp_rank = {r["feature"]: (i + 1, r) for i, r in enumerate(ranking["separation_power"])}
    lines.append("  features by permutation importance (AUC drop ± std | SP alone, floor, rank):")
    for r in ranking["permutation_importance"][:8]:
        rank, s = sp_rank[r["feature"]]
        lines.append(
            f"    {r['feature']:>18} {r['auc_drop']:+.4f} ± {r['auc_drop_std']:.4f} | "
            f"{s['separation_power']:.4f} ({s['floor']:.4f}) #{rank}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", default=str(SHARED / "g4_photons_dev2.h5"))
    parser.add_argument("--control", default=str(SHARED / "g4_photons_dev.h5"))
    parser.add_argument("--events-per-energy", type=int, default=4500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="/tmp/qcalo_diagnostics_g4")
    parser.add_argument("--result", default=str(RESULT))
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.io import read_showers
    from qcalo.data.simulation import simulate
    from qcalo.pipeline import evaluate

    for path in (args.reference, args.control):
        if not Path(path).is_file():
            print(f"{path}: Geant4 file not found (set QCALO_SHARED)", file=sys.stderr)
            return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    wall = time.perf_counter()

    reference = per_energy_subsample(read_showers(args.reference), args.events_per_energy, 1)
    energies = np.unique(reference.incident_energies)
    start = time.perf_counter()
    samples = {
        "simulator": simulate("photon", energies, args.events_per_energy, seed=args.seed + 1),
    }
    simulate_s = time.perf_counter() - start
    samples["geant4_control"] = per_energy_subsample(
        read_showers(args.control), args.events_per_energy, 2
    )

    results = {}
    for name, generated in samples.items():
        print(f"evaluating {name} against {Path(args.reference).name} ...", flush=True)
        start = time.perf_counter()
        metrics = evaluate(
            generated,
            reference,
            "photons",
            work / name,
            metrics="cls-high,diagnostics",
            profile="fast",
            seed=args.seed,
        )
        results[name] = {
            "generated": "qcalo.data.simulation.simulate('photon', ...)"
            if name == "simulator"
            else str(args.control),
            "n_generated": metrics["n_generated"],
            "n_reference": metrics["n_reference"],
            "cls_high": {
                k: metrics["classifier"]["high"][k]
                for k in ("auc", "jsd", "profile", "n_per_sample", "epochs_run", "seconds")
            },
            "seconds": {**metrics["seconds"], "evaluate_total": time.perf_counter() - start},
            "diagnostics": metrics["diagnostics"],
        }
        print(table(name, metrics["diagnostics"], metrics["classifier"]["high"]), flush=True)

    figure = Path(args.result).with_suffix(".png")
    shutil.copyfile(work / "simulator" / "diagnostics_per_energy.png", figure)
    sim = results["simulator"]["seconds"]
    result = {
        "benchmark": "diagnostics_g4",
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "wall_seconds": time.perf_counter() - wall,
        "reference": str(args.reference),
        "events_per_energy": args.events_per_energy,
        "energies_mev": [float(e) for e in energies],
        "seed": args.seed,
        "profile": "fast",
        "simulate_seconds": simulate_s,
        "cost": {
            "note": "seconds on this machine at this load; 'diagnostics' reuses cls-high's "
            "all-energy classifier (its per-energy classifiers, permutation importance, "
            "histograms and two PNGs are what it adds)",
            "cls_high_s": sim.get("cls-high"),
            "diagnostics_s": sim.get("diagnostics"),
            "diagnostics_breakdown_s": results["simulator"]["diagnostics"]["seconds"],
        },
        "figure": figure.name,
        "samples": results,
    }
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"cost (simulator): cls-high {sim.get('cls-high', float('nan')):.1f} s, diagnostics "
        f"{sim.get('diagnostics', float('nan')):.1f} s; wall {result['wall_seconds']:.0f} s, "
        f"load {load_before} → {result['loadavg_after']}"
    )
    print(f"wrote {args.result} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
