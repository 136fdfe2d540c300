"""Issue 13, study 1: does anything quantum sit above the classical curve? (reads a study table)

Takes the ``table.csv`` of ``qcalo study configs/studies/stage1_g4.yaml`` and, for every cell
of a family other than ``mlp``, compares its mean held-out stage-1 NLL with the classical
curve at the same stage-1 parameter count: the MLP cells' means interpolated linearly in
log(parameter count) between the two MLP cells that bracket it (no extrapolation). Errors are
standard errors of the mean over seeds (std/√n), combined in quadrature with the interpolated
MLP error; a difference is quoted with its significance in those units. The same for the
separation power of E_tot/E_inc. Lower is better for both, so a negative difference means the
cell beats the classical curve.

Usage::

    .venv/bin/python benchmarks/study_stage1_summary.py /work/studies/stage1_g4/table.csv

Results: benchmarks/results/study_stage1_g4_summary.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

METRICS = ("training.val_nll_stage1", "separation_power.etot_einc")


def _classical_curve(rows: list[dict], metric: str, params: float) -> tuple[float, float] | None:
    """(mean, standard error) of the MLP curve at ``params``, or None outside its range."""
    mlp = sorted(
        (float(r["params_stage1_total"]), float(r[f"{metric}_mean"]), _sem(r, metric))
        for r in rows
        if r["family"] == "mlp"
    )
    for (x0, y0, e0), (x1, y1, e1) in zip(mlp, mlp[1:]):
        if x0 <= params <= x1:
            t = math.log(params / x0) / math.log(x1 / x0)
            return (1 - t) * y0 + t * y1, math.hypot((1 - t) * e0, t * e1)
    return None


def _sem(row: dict, metric: str) -> float:
    std = row[f"{metric}_std"]
    return float(std) / math.sqrt(int(row["n_seeds"])) if std else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table")
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "study_stage1_g4_summary.json")
    )
    args = parser.parse_args(argv)
    with open(args.table, newline="") as f:
        rows = list(csv.DictReader(f))
    comparisons = []
    for row in rows:
        params = float(row["params_stage1_total"])
        entry = {
            "cell": row["cell"],
            "family": row["family"],
            "n_seeds": int(row["n_seeds"]),
            "stage1_parameters": int(params),
            "stage1_quantum_parameters": int(row["params_stage1_quantum"]),
        }
        for metric in METRICS:
            mean, sem = float(row[f"{metric}_mean"]), _sem(row, metric)
            entry[metric] = {"mean": mean, "std": float(row[f"{metric}_std"] or "nan"), "sem": sem}
            curve = _classical_curve(rows, metric, params) if row["family"] != "mlp" else None
            if curve is not None:
                diff, err = mean - curve[0], math.hypot(sem, curve[1])
                entry[metric]["classical_curve"] = {"mean": curve[0], "sem": curve[1]}
                entry[metric]["minus_classical"] = {"diff": diff, "sem": err, "sigma": diff / err}
        comparisons.append(entry)

    print(f"{'cell':<58} {'params (q)':>12} | {'NLL stage 1':>14} | {'Δ vs MLP curve':>22}")
    for e in comparisons:
        nll = e["training.val_nll_stage1"]
        cmp = nll.get("minus_classical")
        delta = (
            f"{cmp['diff']:+.3f} ± {cmp['sem']:.3f} ({cmp['sigma']:+.1f}σ)"
            if cmp
            else ("(the curve)" if e["family"] == "mlp" else "outside the MLP range")
        )
        print(
            f"{e['cell'][:58]:<58} {e['stage1_parameters']:>6} ({e['stage1_quantum_parameters']:>3}) | "
            f"{nll['mean']:.3f} ± {nll['std']:.3f} | {delta}"
        )
    result = {
        "what": "stage-1 study: each non-MLP cell against the MLP curve interpolated in log(params)",
        "table": str(args.table),
        "errors": "sem = std over seeds / sqrt(n_seeds); differences combine both in quadrature",
        "comparisons": comparisons,
        "commit": git_commit(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
