"""Do post-sampling voxel cuts help a trained qcalo flow? (issue 9)

Two cuts, each fitted on ``--train`` and applied to an already generated file, evaluated with
and without against held-out Geant4 showers, with two classifier seeds so that the classifier's
own spread is visible beside any change:

* **quantile** ``q`` (CaloINN, Ernst et al., arXiv:2312.09290): each voxel's values below that
  voxel's ``q`` quantile of its non-zero training values set to 0 (layer sums not kept);
* **occupancy** ``p``: voxels non-zero in fewer than a fraction ``p`` of the training showers
  generated empty and their layers renormalised, exactly what ``preprocessing:
  min_voxel_occupancy: p`` does inside the sampler (``ShowerPreprocessing.renormalise``), so a
  model trained without the option can be judged with it.

Usage::

    .venv/bin/python benchmarks/postcut_g4.py --generated gen.h5 --train train.h5 \\
        --heldout heldout.h5 --quantiles 0 0.01 0.02 --tag classical_1x
    .venv/bin/python benchmarks/postcut_g4.py --generated gen.h5 --train train.h5 \\
        --heldout heldout.h5 --quantiles 0 --occupancies 1e-3 --tag classical_b12

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


def empty_voxel_cut(showers: np.ndarray, train: np.ndarray, occupancy: float) -> np.ndarray:
    """(N, V) MeV with the voxels of occupancy below ``occupancy`` in ``train`` emptied and each
    layer renormalised to its sum, through the sampler's own code."""
    import torch

    from qcalo.data.geometry import load_geometry
    from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing, empty_voxels

    geometry = load_geometry("photons")
    empty = empty_voxels((train > 0).mean(axis=0), occupancy, geometry)
    stats = PreprocessingStats(
        e_inc_min=1.0, e_inc_max=2.0, u0_factor=1.0, n_layers=geometry.n_layers,
        n_voxels=geometry.n_voxels, fraction_noise=0.0, empty_voxels=empty,
    )  # fmt: skip
    pre = ShowerPreprocessing(geometry, stats).double()
    x = torch.as_tensor(showers, dtype=torch.float64)
    e_layer = pre.layer_sums(x)
    return pre.renormalise(pre.fractions(x, e_layer), e_layer).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", required=True)
    parser.add_argument("--train", required=True, help="the model's training showers")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.0, 0.01, 0.02])
    parser.add_argument("--occupancies", type=float, nargs="*", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tag", default="run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.io import ShowerData, read_showers
    from qcalo.pipeline.evaluate import evaluate

    train = read_showers(args.train)
    gen = read_showers(args.generated)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cuts = [("quantile", q) for q in args.quantiles]
        cuts += [("occupancy", p) for p in args.occupancies]
        for cut, q in cuts:
            showers = gen.showers
            if cut == "quantile" and q > 0:
                showers = np.where(showers >= voxel_floors(train.showers, q), showers, 0.0)
            if cut == "occupancy":
                showers = empty_voxel_cut(showers, train.showers, q)
            data = ShowerData(incident_energies=gen.incident_energies, showers=showers)
            for seed in args.seeds:
                metrics = (
                    "cls-high,cls-low,fpd,hist" if seed == args.seeds[0] else "cls-high,cls-low"
                )
                m = evaluate(
                    data,
                    args.heldout,
                    "photons",
                    Path(tmp) / f"{cut}{q}_s{seed}",
                    metrics=metrics,
                    profile="fast",
                    seed=seed,
                )
                row = {
                    "cut": cut,
                    "quantile" if cut == "quantile" else "min_voxel_occupancy": q,
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
