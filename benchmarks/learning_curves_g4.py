"""Learning curves on the Geant4 photons: is data, capacity or training time the limit? (issue 9)

One config is trained on growing fractions of a training pool and judged on one fixed held-out
sample, so the points differ only in how much data the model saw:

1. The pool is the concatenation of ``--train-files`` (default: the 80 % training split of
   ``g4_photons_dev.h5`` that ``benchmarks/quality_g4.py`` writes, plus all of the independent
   ``g4_photons_dev2.h5``); the held-out file (default: that split's 20 %) never enters it.
2. For each fraction f in ``--fractions`` a seeded permutation of the pool (the same for every
   fraction, so smaller sets are subsets of larger ones) gives its first f·N events, written as
   one CaloChallenge file. The trainer holds out its own validation fraction of it as usual.
3. Each is trained for ``--epochs`` epochs with the same seed; the per-epoch validation NLLs
   (the curve against training time) come from its metrics.csv.
4. Each generates one shower per held-out incident energy and is evaluated against the held-out
   showers: cls-high (fast profile, N quoted), separation powers, FPD.

Usage::

    .venv/bin/python benchmarks/quality_g4.py --epochs 1 --configs classical_photons  # writes the split
    .venv/bin/python benchmarks/learning_curves_g4.py --config classical_photons --fractions 0.25 0.5 1 \\
        --epochs 30 --work /tmp/qcalo_learning_curves [--only 1]   # one process per fraction: --only

Results: benchmarks/results/learning_curves_g4_<config>.json (one entry per fraction; with
``--only`` each process merges its own entry) and a table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

SHARED = Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data"


def _subset_file(pool: list[Path], fraction: float, seed: int, out: Path) -> int:
    """Write the first ``fraction`` of a seeded permutation of the pooled events to ``out``."""
    from qcalo.data.io import read_showers, write_showers

    parts = [read_showers(p) for p in pool]
    energies = np.concatenate([p.incident_energies.reshape(-1) for p in parts])
    showers = np.concatenate([p.showers for p in parts])
    order = np.random.default_rng(seed).permutation(len(energies))
    keep = np.sort(order[: int(round(fraction * len(energies)))])
    if not out.is_file():
        write_showers(out, energies[keep], showers[keep])
    return len(keep)


def add_pool_arguments(parser: argparse.ArgumentParser, *, work: str) -> None:
    """The options every Geant4 benchmark on the pooled training files shares (also used by
    ``interpolation_g4.py``): epochs, seed, threads, work folder, pool and held-out files."""
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=work)
    parser.add_argument(
        "--train-files",
        nargs="+",
        default=["/tmp/qg4cc/train.h5", str(SHARED / "g4_photons_dev2.h5")],
    )
    parser.add_argument("--heldout", default="/tmp/qg4cc/heldout.h5")


def config_name(config: str) -> str:
    """A shipped config's name, or a YAML path's stem: names the result files."""
    return Path(config).stem if config.endswith((".yaml", ".yml")) else config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default="classical_photons", help="shipped config name or YAML path"
    )
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--only", type=float, default=None, help="run just this fraction")
    add_pool_arguments(parser, work="/tmp/qcalo_learning_curves")
    parser.add_argument("--metrics", default="cls-high,hist,fpd,diagnostics")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.generation import generate
    from qcalo.pipeline.evaluate import evaluate
    from qcalo.training import read_metrics, train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    name = config_name(args.config)
    results_path = REPO / "benchmarks" / "results" / f"learning_curves_g4_{name}.json"
    fractions = [args.only] if args.only is not None else args.fractions
    for fraction in fractions:
        tag = f"f{fraction:g}"
        data = work / f"pool_{tag}_s{args.seed}.h5"
        n_pool = _subset_file([Path(p) for p in args.train_files], fraction, args.seed, data)
        run = work / f"run_{name}_{tag}_e{args.epochs}_s{args.seed}"
        start = time.perf_counter()
        train(args.config, data, run, seed=args.seed, epochs=args.epochs, resume=run.exists())
        seconds = time.perf_counter() - start
        generated = work / f"gen_{name}_{tag}_e{args.epochs}_s{args.seed}.h5"
        if not generated.is_file():
            generate(run, generated, energies_from=args.heldout, seed=args.seed, device="cpu")
        metrics = evaluate(
            generated,
            args.heldout,
            "photons",
            work / f"eval_{name}_{tag}_e{args.epochs}_s{args.seed}",
            metrics=args.metrics.split(","),
            profile="fast",
            seed=args.seed,
        )
        summary = json.loads((run / "summary.json").read_text())
        history = read_metrics(run)
        entry = {
            "fraction": fraction,
            "n_pool_events": n_pool,
            "n_train": summary["n_train"],
            "n_val": summary["n_val"],
            "epochs": args.epochs,
            "best_epoch": summary["best_epoch"],
            "best_val_nll": summary.get("best_val_nll"),
            "curve": [
                {
                    k: row[k]
                    for k in ("epoch", "train_nll", "val_nll", "val_nll_stage1", "val_nll_stage2")
                }
                for row in history
            ],
            "training_time_s": summary["training_time_s"],
            "wall_s_this_call": seconds,
            "auc_high": metrics["auc"]["high"],
            "auc_profile": metrics["auc_profile"],
            "n_generated": metrics["n_generated"],
            "n_reference": metrics["n_reference"],
            "fpd_x1e3": metrics.get("fpd"),
            "sp_etot_einc": metrics["separation_power"]["etot_einc"],
            "sp_summary": metrics.get("separation_power_summary"),
            "auc_high_per_energy": {
                g["label"]: g["auc"]
                for g in metrics.get("diagnostics", {}).get("energy_groups", [])
            },
        }
        existing = json.loads(results_path.read_text()) if results_path.is_file() else {}
        entries = [e for e in existing.get("entries", []) if e["fraction"] != fraction]
        entries = sorted([*entries, entry], key=lambda e: e["fraction"])
        result = {
            "what": "learning curve: one config on growing fractions of a Geant4 pool, judged on one held-out sample",
            "config": args.config,
            "config_name": name,
            "seed": args.seed,
            "train_files": args.train_files,
            "heldout": args.heldout,
            "entries": entries,
            "commit": git_commit(),
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
            "machine": platform.machine(),
        }
        results_path.write_text(json.dumps(result, indent=1) + "\n")
        print(
            f"{name} fraction {fraction:g}: {n_pool} pooled events ({summary['n_train']} train), "
            f"best val NLL {entry['best_val_nll']:.2f} at epoch {entry['best_epoch']}, "
            f"AUC high {entry['auc_high']:.3f} (fast, N={entry['n_generated']}), "
            f"SP E_tot/E_inc {entry['sp_etot_einc']:.4f}, {summary['training_time_s']:.0f} s",
            flush=True,
        )
    with open(work / "done.csv", "a", newline="") as f:
        csv.writer(f).writerow([args.config, *fractions, args.epochs])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
