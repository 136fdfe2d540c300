"""Does CaloINN's post-sampling cut help a trained qcalo flow? (issue 9)

CaloINN (Ernst et al., arXiv:2312.09290) sets each generated voxel's values below that voxel's
1 % quantile of the non-zero training values to 0. This applies the cut (quantile ``q`` per
voxel, fitted on ``--train``) to an already generated file and evaluates it with and without
the cut against held-out Geant4 showers, with two classifier seeds so that the classifier's
own spread is visible beside any change.

Usage::

    .venv/bin/python benchmarks/postcut_g4.py --generated gen.h5 --train train.h5 \\
        --heldout heldout.h5 --quantiles 0 0.01 0.02 --tag classical_1x

Result: ``benchmarks/results/postcut_g4_<tag>.json`` and one line per (q, seed) on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402


def voxel_floors(showers: np.ndarray, quantile: float) -> np.ndarray:
    """(V,) MeV: each voxel's ``quantile`` of its non-zero values (0 for a voxel never hit)."""
    masked = np.where(showers > 0, showers.astype(np.float64), np.nan)
    with np.errstate(all="ignore"):
        floors = np.nanquantile(masked, quantile, axis=0)
    return np.nan_to_num(floors, nan=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", required=True)
    parser.add_argument("--train", required=True, help="the model's training showers")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.0, 0.01, 0.02])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tag", default="run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.io import ShowerData, read_showers
    from qcalo.evaluation.pipeline import evaluate

    train = read_showers(args.train)
    gen = read_showers(args.generated)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for q in args.quantiles:
            showers = gen.showers
            if q > 0:
                showers = np.where(showers >= voxel_floors(train.showers, q), showers, 0.0)
            data = ShowerData(incident_energies=gen.incident_energies, showers=showers)
            for seed in args.seeds:
                metrics = (
                    "cls-high,cls-low,fpd,hist" if seed == args.seeds[0] else "cls-high,cls-low"
                )
                m = evaluate(
                    data,
                    args.heldout,
                    "photons",
                    Path(tmp) / f"q{q}_s{seed}",
                    metrics=metrics,
                    profile="fast",
                    seed=seed,
                )
                row = {
                    "quantile": q,
                    "classifier_seed": seed,
                    "auc_high": m["auc"]["high"],
                    "auc_low": m["auc"]["low"],
                    "auc_profile": m["auc_profile"],
                    "n_generated": m["n_generated"],
                    "n_reference": m["n_reference"],
                    "fpd_x1e3": m.get("fpd"),
                    "sp_etot_einc": m.get("separation_power", {}).get("etot_einc"),
                }
                rows.append(row)
                print(row, flush=True)
    result = {
        "what": __doc__.split("\n")[0],
        "generated": args.generated,
        "train": args.train,
        "heldout": args.heldout,
        "rows": rows,
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "machine": platform.machine(),
    }
    out = REPO / "benchmarks" / "results" / f"postcut_g4_{args.tag}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
