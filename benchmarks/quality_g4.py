"""Quality on the Geant4 photon reference: classical twin vs hybrid, trained and evaluated alike.

1. Split ../shared/data/g4_photons_dev.h5 (40,500 showers, 2^8–2^16 MeV) by a seeded
   permutation into 80 % for training (the trainer then holds out its own validation fraction)
   and 20 % held out, both written as CaloChallenge files under ``--work``.
2. Train each config (default ``classical_photons`` and ``hybrid_photons``) for ``--epochs``
   epochs with the same seed; record the best validation NLL, training time and parameter counts.
3. Generate one shower per held-out incident energy (``--energies-from`` the held-out file).
4. If :mod:`qcalo.evaluation` is importable, run its fast evaluation of the generated file
   against the held-out Geant4 showers (classifier AUCs, E_tot/E_inc separation power, ...).

Training budgets here are tiny next to the CaloChallenge entries (hours on GPUs): read the
numbers as a like-for-like comparison of the two models at equal budget, not as final quality.

Usage::

    .venv/bin/python benchmarks/quality_g4.py [--epochs 3] [--configs classical_photons hybrid_photons]
        [--threads 2] [--metrics hist,cls-high] [--work /tmp/qcalo_quality_g4]

Results: benchmarks/results/quality_g4.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

DEFAULT_G4 = (
    Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data" / "g4_photons_dev.h5"
)


def split_reference(
    source: Path, work: Path, seed: int, heldout_fraction: float = 0.2
) -> tuple[Path, Path]:
    """Write ``work/train.h5`` and ``work/heldout.h5`` from a seeded permutation of ``source``."""
    import numpy as np

    from qcalo.data.io import read_showers, write_showers

    data = read_showers(source)
    perm = np.random.default_rng(seed).permutation(len(data))
    n_heldout = int(round(heldout_fraction * len(data)))
    heldout_idx, train_idx = np.sort(perm[:n_heldout]), np.sort(perm[n_heldout:])
    train_path, heldout_path = work / "train.h5", work / "heldout.h5"
    write_showers(
        train_path, data.incident_energies[train_idx], data.showers[train_idx], dtype=np.float32
    )
    write_showers(
        heldout_path,
        data.incident_energies[heldout_idx],
        data.showers[heldout_idx],
        dtype=np.float64,
    )
    return train_path, heldout_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default=str(DEFAULT_G4))
    parser.add_argument(
        "--metrics",
        default="hist,cls-high",
        help="qcalo.evaluation metrics to run (comma-separated)",
    )
    parser.add_argument(
        "--work",
        default="/tmp/qcalo_quality_g4",
        help="folder for the split files, runs and generated files",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete --work first (otherwise finished runs are reused)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality_g4.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.generation import generate
    from qcalo.training import train
    from qcalo.utils.atomic import atomic_path

    reference = Path(args.reference)
    if not reference.is_file():
        print(f"{reference}: Geant4 reference not found; nothing to do", file=sys.stderr)
        return 2
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    train_path, heldout_path = split_reference(reference, work, args.seed)

    try:
        from qcalo.evaluation import evaluate
    except ImportError:
        evaluate = None

    rows = []
    for name in args.configs:
        run_dir = work / f"run_{name}_e{args.epochs}_s{args.seed}"
        summary_path = run_dir / "summary.json"
        if not (
            summary_path.is_file()
            and json.loads(summary_path.read_text())["epochs_run"] >= args.epochs
        ):
            if run_dir.exists():
                shutil.rmtree(run_dir)
            print(f"training {name} for {args.epochs} epochs ...", flush=True)
            train(name, train_path, run_dir, seed=args.seed, epochs=args.epochs, device="cpu")
        summary = json.loads(summary_path.read_text())
        generated = work / f"gen_{name}_e{args.epochs}_s{args.seed}.h5"
        t0 = time.perf_counter()
        generate(run_dir, generated, energies_from=heldout_path, seed=args.seed, device="cpu")
        generation_s = time.perf_counter() - t0
        row = {
            "config": name,
            "parameter_counts": summary["parameter_counts"],
            "epochs": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "best_val_nll": summary["best_val_nll"],
            "training_time_s": summary["training_time_s"],
            "n_train": summary["n_train"],
            "n_val": summary["n_val"],
            "generation_s_heldout": generation_s,
        }
        if evaluate is not None:
            print(f"evaluating {name} ...", flush=True)
            metrics = evaluate(
                generated,
                heldout_path,
                "photons",
                work / f"eval_{name}",
                metrics=args.metrics,
                seed=args.seed,
                run_dir=None,
            )
            row["auc"] = metrics.get("auc")
            sep = metrics.get("separation_power", {})
            row["separation_power_etot_einc"] = sep.get("etot_einc")
            row["separation_power_summary"] = metrics.get("separation_power_summary")
            row["fpd"] = metrics.get("fpd")
            row["kpd"] = metrics.get("kpd")
        rows.append(row)

    result = {
        "benchmark": "quality_g4",
        "git_commit": git_commit(),
        "reference": str(reference),
        "split": {"seed": args.seed, "heldout_fraction": 0.2, "train_file_events": None},
        "epochs": args.epochs,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "evaluation_available": evaluate is not None,
        "metrics": args.metrics,
        "rows": rows,
    }
    from qcalo.data.io import inspect_file

    result["split"]["train_file_events"] = inspect_file(train_path).n_events
    result["split"]["heldout_events"] = inspect_file(heldout_path).n_events
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")

    print(
        f"\n{'config':20s} {'params':>10s} {'quantum':>8s} {'epochs':>6s} {'val NLL':>10s} {'train s':>8s} {'AUC high':>9s} {'AUC low':>8s} {'sep Etot/Einc':>13s}"
    )
    for r in rows:
        auc = r.get("auc") or {}
        sep = r.get("separation_power_etot_einc")
        print(
            f"{r['config']:20s} {r['parameter_counts']['total']:>10d} {r['parameter_counts']['quantum']:>8d} {r['epochs']:>6d} "
            f"{r['best_val_nll']:>10.2f} {r['training_time_s']:>8.0f} {auc.get('high', float('nan')):>9.3f} "
            f"{auc.get('low', float('nan')):>8.3f} {sep if sep is None else f'{sep:.4f}':>13}"
        )
    print(
        f"(threads {torch.get_num_threads()}, load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
