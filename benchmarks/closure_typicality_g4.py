"""Latent closure and conformal typicality of trained runs against held-out Geant4 showers.

For each RUN:GENERATED pair, runs ``qcalo evaluate --metrics typicality,closure --run RUN``
against ``--reference`` and records the atypical fractions (overall and per incident energy)
and each stage's closure summary, with the commit, load average and thread count.

Usage (after benchmarks/quality_g4.py has trained the twins and generated their showers)::

    python benchmarks/closure_typicality_g4.py --reference /tmp/qg4cc/heldout.h5 \\
        --pair classical_photons=/tmp/qg4cc/run_classical_photons_e30_s0:/tmp/qg4cc/gen_classical_photons_e30_s0.h5 \\
        --pair hybrid_photons=/tmp/qg4cc/run_hybrid_photons_e30_s0:/tmp/qg4cc/gen_hybrid_photons_e30_s0.h5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from qcalo import api
from qcalo.utils.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="held-out Geant4 showers (HDF5)")
    parser.add_argument(
        "--pair", action="append", required=True, metavar="NAME=RUN_DIR:GENERATED.h5"
    )
    parser.add_argument("--out", default=str(RESULTS / "closure_typicality_twins_g4.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {
        "what": "latent closure and conformal typicality of trained runs vs held-out Geant4",
        "reference": args.reference,
        "commit": _commit(),
        "load_average_start": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "seed": args.seed,
        "models": {},
    }
    for pair in args.pair:
        name, rest = pair.split("=", 1)
        run_dir, generated = rest.split(":", 1)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            metrics = api.evaluate(
                generated,
                args.reference,
                "photons",
                Path(tmp) / "eval",
                metrics="typicality,closure",
                run_dir=run_dir,
                seed=args.seed,
            )
        closure = {
            stage: {
                "dim": c["dim"],
                "n": c["n"],
                "worst_ks": c["ks_max"],
                "median_ks": sorted(c["ks_statistic"])[len(c["ks_statistic"]) // 2],
                "norm_chi2": c["norm_chi2"],
            }
            for stage, c in metrics["latent_closure"].items()
        }
        record["models"][name] = {
            "run_dir": run_dir,
            "generated": generated,
            "typicality": {
                "alphas": metrics["typicality"]["alphas"],
                "per_energy": metrics["typicality"]["per_energy"],
                "n_calibration": metrics["typicality"]["n_calibration"],
            },
            "latent_closure": closure,
            "seconds": time.perf_counter() - start,
        }
        t = metrics["typicality"]["alphas"]
        print(
            f"{name}: atypical α=0.05 {t['0.05']['fraction']:.4f} ± {t['0.05']['error']:.4f}, "
            f"α=0.01 {t['0.01']['fraction']:.4f} ± {t['0.01']['error']:.4f}; "
            + "; ".join(
                f"{s} worst KS {c['worst_ks']['statistic']:.3f}, p(‖z‖²) {c['norm_chi2']['p_value']:.2g}"
                for s, c in closure.items()
            )
        )
    record["load_average_end"] = os.getloadavg()
    write_json(args.out, record)
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
