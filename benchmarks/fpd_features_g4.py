"""Which high-level features carry the FPD? (issue 9)

FPD (``qcalo.evaluation.fpd_kpd``) is the Fréchet distance between Gaussians fitted to the
CaloChallenge high-level classifier columns (max-abs normalised by the reference), extrapolated
to infinite N. Here, at the full N of both files (not extrapolated), each column's share is
measured as the drop in the Fréchet distance when that column alone is left out, beside its
mean term (mu_gen - mu_ref)^2 and its width term (sigma_gen - sigma_ref)^2; and the
reference's two halves against each other give the finite-N level to compare with.

Usage::

    .venv/bin/python benchmarks/fpd_features_g4.py --reference heldout.h5 --generated a.h5 [b.h5 ...]
        [--tag NAME] [--top 12]

Result: ``benchmarks/results/fpd_features_g4_<tag>.json`` and a table per file on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402


def columns(path: str) -> np.ndarray:
    """(N, 30) high-level classifier columns of a photon file, 1 MeV threshold as evaluate uses."""
    from qcalo.data.features import classifier_columns, compute_features
    from qcalo.data.geometry import load_geometry
    from qcalo.data.io import read_showers
    from qcalo.pipeline.evaluate import THRESHOLD_MEV

    geometry = load_geometry("photons")
    data = read_showers(path)
    showers = np.where(data.showers >= THRESHOLD_MEV, data.showers, 0.0)
    features = compute_features(
        data.incident_energies, showers, geometry, threshold_mev=THRESHOLD_MEV
    )
    return classifier_columns(features, geometry)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from qcalo.evaluation.fpd_kpd import frechet_distance

    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--generated", nargs="+", required=True)
    parser.add_argument("--tag", default="run")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)

    from qcalo.data.features import classifier_column_names
    from qcalo.data.geometry import load_geometry
    from qcalo.evaluation.fpd_kpd import normalise_features

    names = classifier_column_names(load_geometry("photons"))
    ref_raw = columns(args.reference)
    half = len(ref_raw) // 2
    ref_n, _ = normalise_features(ref_raw, ref_raw)
    floor = 1e3 * frechet(ref_n[:half], ref_n[half:])
    print(f"reference half vs half, x1e3: {floor:.2f} (N = {half} each)")
    files = []
    for path in args.generated:
        ref, gen = normalise_features(ref_raw, columns(path))
        total = frechet(ref, gen)
        rows = []
        for j, name in enumerate(names):
            keep = [k for k in range(ref.shape[1]) if k != j]
            rows.append({
                "column": name,
                "drop_x1e3": 1e3 * (total - frechet(ref[:, keep], gen[:, keep])),
                "mean_term_x1e3": 1e3 * float((ref[:, j].mean() - gen[:, j].mean()) ** 2),
                "width_term_x1e3": 1e3 * float((ref[:, j].std() - gen[:, j].std()) ** 2),
            })  # fmt: skip
        rows.sort(key=lambda r: -r["drop_x1e3"])
        print(f"\n{path}: Fréchet distance at full N x1e3 = {1e3 * total:.2f}")
        print(f"{'column':24s} {'drop':>7s} {'mean':>7s} {'width':>7s}")
        for r in rows[: args.top]:
            print(f"{r['column']:24s} {r['drop_x1e3']:7.2f} {r['mean_term_x1e3']:7.2f} "
                  f"{r['width_term_x1e3']:7.2f}")  # fmt: skip
        files.append(
            {"generated": path, "n": len(gen), "frechet_x1e3": 1e3 * total, "columns": rows}
        )
    result = {
        "what": __doc__.split("\n")[0],
        "reference": args.reference,
        "n_reference": len(ref_raw),
        "reference_half_vs_half_x1e3": floor,
        "files": files,
        "commit": git_commit(),
        "load_average": list(os.getloadavg()),
        "machine": platform.machine(),
    }
    out = REPO / "benchmarks" / "results" / f"fpd_features_g4_{args.tag}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
