"""Anatomy of the stage-2 latent closure: where the voxel flow misses N(0, I).

The flow twins' stage 2 does not close (worst per-dimension KS ≈ 0.38 over 368 latent
dimensions, issue 32) while stage 1 does. This script asks three questions of one trained run,
each with numbers, to choose the next stage-2 design by measurement:

1. **Overfitting or capacity?** The same closure statistics for Geant4 showers the run never saw
   (the held-out reference) and for as many showers from its training pool: a flow that closes
   on its training showers but not on held-out ones overfits; one that fails on both lacks
   capacity (or the data has a feature the flow cannot map, such as a point mass).
2. **Which dimensions?** Quantiles of the per-dimension KS statistic (one bad dimension or a
   broad failure?), the worst dimensions, and for each the preprocessed voxel it tracks most
   (largest |Spearman ρ| between the latent and the logit voxel fractions), with that voxel's
   layer, occupancy (fraction of showers with E > 0) and ρ.
3. **Where in energy?** ‖z‖²/d and the worst KS per incident energy.
4. **Jointly?** The covariance spectrum of the latents and the KL divergence of their Gaussian
   fit from N(0, I), which a rotation of the latent cannot hide (:func:`second_moments`).

Each statistic is printed beside its **finite-N floor**: the same statistic of exactly normal
latents of the same shape (N, 368), drawn with seed 0, i.e. what a perfect model would score (the
worst of 368 KS statistics at N ≈ 900 is ~0.06 by chance alone).

Latents as :func:`qcalo.generation.latents.run_latents` computes them (the showers dequantised as
in training, noise seed 0). Prints a summary and writes a JSON record with commit, load, threads.

Usage::

    python benchmarks/closure_anatomy_g4.py --run STUDY/cells/CELL/seed-1/run \\
        --reference STUDY/data/reference-*.h5 --training STUDY/data/holdout-train-*.h5 \\
        --out benchmarks/results/closure_anatomy_g4.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from qcalo.data.geometry import load_geometry
from qcalo.data.io import read_showers
from qcalo.evaluation.closure import stage_closure
from qcalo.generation.latents import run_latents
from qcalo.utils.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent))
from bench_generation import git_commit  # noqa: E402

from qcalo.training.trainer import cpu_model  # noqa: E402

KS_QUANTILES = (0.5, 0.9, 0.99, 1.0)


def _standardised(values: np.ndarray) -> np.ndarray:
    """Columns (N, d) (or a vector, as one column) at mean 0 and standard deviation 1; a constant
    column becomes NaN, which the caller reads as no correlation."""
    v = values.reshape(len(values), -1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (v - v.mean(axis=0)) / v.std(axis=0)


def second_moments(z: np.ndarray) -> dict[str, float]:
    """Rotation-invariant closure of latents (N, d): the extreme eigenvalues of their covariance
    and the KL divergence from N(0, I) of the Gaussian with their mean μ and covariance Σ, per
    dimension: (tr Σ + μᵀμ - d - log det Σ) / 2d nats.

    Why: per-dimension KS cannot see a latent whose last layer mixes many features (a dense
    rotation), since each mixed coordinate is near-normal by the central limit theorem whatever
    the joint law; a covariance far from I still shows. For exactly normal latents the
    eigenvalues spread over the Marchenko-Pastur range (1 ± √(d/N))².

    Against the closed form for N(0, diag(1, 4)): (1 + 4 - 2 - log 4) / 4 = 0.403 nats::

    >>> rng = np.random.default_rng(0)
    >>> moments = second_moments(rng.standard_normal((400_000, 2)) * [1.0, 2.0])
    >>> [round(moments[k], 2) for k in ("cov_eig_min", "cov_eig_max", "gaussian_kl_per_dim")]
    [1.0, 4.0, 0.4]
    """
    z = z.astype(np.float64)
    d = z.shape[1]
    mean = z.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(np.cov(z, rowvar=False))
    kl = 0.5 * (eigenvalues.sum() + mean @ mean - d - np.log(eigenvalues).sum()) / d
    return {
        "cov_eig_min": float(eigenvalues[0]),
        "cov_eig_max": float(eigenvalues[-1]),
        "gaussian_kl_per_dim": float(kl),
    }


def summarise(z: np.ndarray) -> dict[str, Any]:
    """Closure statistics of latents (N, d): KS quantiles, dimensions over 0.05 / 0.1, χ² joint,
    the covariance spectrum (:func:`second_moments`)."""
    result = stage_closure(z)
    ks = np.asarray(result["ks_statistic"])
    return {
        **second_moments(z),
        "n": result["n"],
        "ks_quantiles": {str(q): float(np.quantile(ks, q)) for q in KS_QUANTILES},
        "dims_ks_over_0.05": int((ks > 0.05).sum()),
        "dims_ks_over_0.10": int((ks > 0.10).sum()),
        "ks_max": result["ks_max"],
        "norm2_mean_over_dim": result["norm_chi2"]["mean_over_dim"],
        "ks_statistic": [round(float(v), 5) for v in ks],
    }


def _spectrum(summary: dict[str, Any]) -> str:
    return (
        f"cov eigenvalues {summary['cov_eig_min']:.3f}..{summary['cov_eig_max']:.3f}, "
        f"Gaussian KL {summary['gaussian_kl_per_dim']:.4f} nats/dim"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained two-stage run folder")
    parser.add_argument("--reference", required=True, help="held-out Geant4 showers (HDF5)")
    parser.add_argument("--training", required=True, help="a file of the run's training pool")
    parser.add_argument("--events", type=int, default=8100, help="showers of each (default 8100)")
    parser.add_argument("--worst", type=int, default=10, help="worst dimensions to attribute")
    parser.add_argument("--out", default=str(RESULTS / "closure_anatomy_g4.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    geometry = load_geometry("photons")
    layer_of_voxel = geometry.layer_index_of_voxel

    record: dict[str, Any] = {
        "what": "stage-2 latent closure of one run: held-out vs training pool, worst dimensions "
        "and the voxels they track, per incident energy",
        "run": args.run,
        "commit": git_commit(),
        "load_average_start": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "samples": {},
    }
    null_rng = np.random.default_rng(0)
    for name, path in (("heldout", args.reference), ("training_pool", args.training)):
        data = read_showers(path, geometry="photons", max_events=args.events)
        encoded = run_latents(
            args.run, data.incident_energies, data.showers, with_inputs=name == "heldout"
        )
        latents = encoded["stage2"]
        summary = summarise(latents)
        ks = np.asarray(summary["ks_statistic"])
        if name == "heldout":
            # Spearman's rho of one latent dimension with every voxel: Pearson's on ranks
            input_ranks = _standardised(stats.rankdata(encoded["stage2_inputs"], axis=0))
            occupancy = (data.showers > 0).mean(axis=0)
            worst = []
            for dim in np.argsort(ks)[::-1][: args.worst]:
                rho = _standardised(stats.rankdata(latents[:, dim]))[:, 0] @ input_ranks
                rho = np.nan_to_num(rho / len(latents))
                voxel = int(np.nanargmax(np.abs(rho)))
                worst.append(
                    {
                        "latent_dim": int(dim),
                        "ks": float(ks[dim]),
                        "voxel": voxel,
                        "layer": int(layer_of_voxel[voxel]),
                        "spearman_rho": float(rho[voxel]),
                        "voxel_occupancy": float(occupancy[voxel]),
                        "latent_quantiles": [
                            float(v) for v in np.quantile(latents[:, dim], [0.01, 0.5, 0.99])
                        ],
                    }
                )
            summary["worst_dims"] = worst
            per_energy = {}
            for energy in np.unique(data.incident_energies):
                rows = data.incident_energies == energy
                sub = stage_closure(latents[rows])
                floor = stage_closure(null_rng.standard_normal(latents[rows].shape))
                per_energy[f"{energy:.0f}"] = {
                    "n": sub["n"],
                    "ks_max": sub["ks_max"]["statistic"],
                    "ks_max_floor": floor["ks_max"]["statistic"],
                    "norm2_mean_over_dim": sub["norm_chi2"]["mean_over_dim"],
                }
            floor_all = summarise(null_rng.standard_normal(latents.shape))
            floor_all.pop("ks_statistic")
            summary["floor"] = floor_all
            summary["per_energy"] = per_energy
        record["samples"][name] = summary
        q = summary["ks_quantiles"]
        print(
            f"{name:14s} N={summary['n']}: KS median {q['0.5']:.3f}, 90% {q['0.9']:.3f}, "
            f"99% {q['0.99']:.3f}, max {q['1.0']:.3f} (dim {summary['ks_max']['dim']}); "
            f"dims > 0.05: {summary['dims_ks_over_0.05']}, > 0.1: {summary['dims_ks_over_0.10']}; "
            f"|z|^2/d {summary['norm2_mean_over_dim']:.3f}; {_spectrum(summary)}"
        )
    floor = record["samples"]["heldout"]["floor"]
    q = floor["ks_quantiles"]
    print(
        f"{'floor (normal)':14s} N={floor['n']}: KS median {q['0.5']:.3f}, 90% {q['0.9']:.3f}, "
        f"99% {q['0.99']:.3f}, max {q['1.0']:.3f}; |z|^2/d {floor['norm2_mean_over_dim']:.3f}; "
        f"{_spectrum(floor)}"
    )
    for row in record["samples"]["heldout"]["worst_dims"]:
        print(
            f"  latent {row['latent_dim']:3d} KS {row['ks']:.3f} ~ voxel {row['voxel']:3d} "
            f"(layer {row['layer']}, occupancy {row['voxel_occupancy']:.3f}, rho {row['spearman_rho']:+.2f}); "
            f"latent 1/50/99% {row['latent_quantiles'][0]:+.2f} {row['latent_quantiles'][1]:+.2f} "
            f"{row['latent_quantiles'][2]:+.2f}"
        )
    for energy, row in record["samples"]["heldout"]["per_energy"].items():
        print(
            f"  E_inc {energy:>6s} MeV  N={row['n']:4d}  worst KS {row['ks_max']:.3f} "
            f"(floor {row['ks_max_floor']:.3f})  |z|^2/d {row['norm2_mean_over_dim']:.3f}"
        )
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
