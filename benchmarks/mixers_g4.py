"""Quantum mixers in stage 2 (issue 33, question 3): every cell of ``configs/studies/mixers_g4.yaml``
per seed, from committed records only.

The cells: 0 the hybrid twin (permutations between stage-2 blocks; study 2's cell 4, its
fast-path runs), 1 / 2 dense random 8-qubit mixers with / without entanglers, 3 / 4 the same
mixers starting at the CNOTs' permutation / the identity (``mixer_init_range: 0``). For each run:
the study's own metrics (``fast`` classifier profile, N = 8,100), the ``calochallenge``-profile
AUCs where measured, and the stage-2 closure of ``benchmarks/closure_anatomy_g4.py`` (worst KS
over 368 dimensions, ‖z‖²/d and, where recorded, the Gaussian KL of the latents from N(0, I)).

Inputs, in ``--records``: ``cell-CCC_seed-S_record.json`` (``qcalo study compare
configs/studies/mixers_g4.yaml --study-dir DIR --export-records RECORDS``) with
``cell-CCC_seed-S_calochallenge.json`` beside it (``qcalo evaluate ... --profile calochallenge
--seed 0``'s ``metrics.json``), and ``closure/cell-CCC_seed-S.json``. Cell 0's closure records are
``closure_anatomy_g4_hybrid_seed{1,2}.json`` (the same runs).

Usage::

    python benchmarks/mixers_g4.py          # writes benchmarks/results/mixers_g4.json, prints a table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qcalo.utils.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent))
from bench_generation import git_commit  # noqa: E402
from fastpath_quality_g4 import merge_calochallenge  # noqa: E402

CELLS = {
    0: "permutations (hybrid twin)",
    1: "entangled mixers, random start",
    2: "product mixers, random start",
    3: "entangled mixers from the CNOT permutation",
    4: "product mixers from the identity",
}
METRICS = (
    "training.val_nll",
    "auc.high.calochallenge",
    "auc.low.calochallenge",
    "auc.high",
    "auc.low",
    "fpd",
    "separation_power.etot_einc",
    "training_time_s",
)


def _closure(path: Path) -> dict[str, Any]:
    held_out = json.loads(path.read_text())["samples"]["heldout"]
    out = {
        "worst_ks": held_out["ks_max"]["statistic"],
        "worst_ks_floor": held_out["floor"]["ks_max"]["statistic"],
        "norm2_mean_over_dim": held_out["norm2_mean_over_dim"],
    }
    if "gaussian_kl_per_dim" in held_out:
        out["gaussian_kl_per_dim"] = held_out["gaussian_kl_per_dim"]
        out["gaussian_kl_per_dim_floor"] = held_out["floor"]["gaussian_kl_per_dim"]
    return out


def record_angles(study_dirs: list[str], records: Path) -> None:
    """Write ``records/angles.json``: per run, the trained stage-2 mixer angles' largest and
    median |θ| (radians), read from each run's best checkpoint (checkpoints are not committed)."""
    import torch

    from qcalo.training.checkpoint import load_checkpoint

    path = records / "angles.json"
    angles: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for study in study_dirs:
        for best in sorted(Path(study).glob("cells/cell-*/seed-*/run/checkpoints/best.pt")):
            cell = int(best.parts[-5].split("__")[0].removeprefix("cell-"))
            seed = int(best.parts[-4].removeprefix("seed-"))
            state = load_checkpoint(best)["model"]
            # the mixers are stage-2 layers of their own (stage2.layers.N.circuit.weights); the
            # conditioners' circuits sit below their coupling (...conditioner...)
            weights = [
                v
                for k, v in state.items()
                if k.startswith("stage2.layers.")
                and k.endswith(".circuit.weights")
                and "conditioner" not in k
            ]
            if not weights:
                continue
            theta = torch.cat([w.flatten() for w in weights]).abs()
            angles[f"cell-{cell:03d}_seed-{seed}"] = {
                "n_angles": int(theta.numel()),
                "max_abs_rad": float(theta.max()),
                "median_abs_rad": float(theta.median()),
            }
    write_json(path, angles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=str(RESULTS / "study_mixers_g4"))
    parser.add_argument("--out", default=str(RESULTS / "mixers_g4.json"))
    parser.add_argument(
        "--runs", nargs="*", default=[], help="study folders: record their mixers' trained angles"
    )
    args = parser.parse_args(argv)
    records = Path(args.records)
    merge_calochallenge(records)
    if args.runs:
        record_angles(args.runs, records)
    angles = (
        json.loads((records / "angles.json").read_text())
        if (records / "angles.json").is_file()
        else {}
    )
    runs: dict[str, Any] = {}
    for cell, label in CELLS.items():
        for path in sorted(records.glob(f"cell-{cell:03d}_seed-*_record.json")):
            seed = int(path.name.split("_seed-")[1].split("_")[0])
            record = json.loads(path.read_text())
            row: dict[str, Any] = {"cell": cell, "label": label, "seed": seed}
            row |= {metric: record[metric] for metric in METRICS if metric in record}
            closure = (
                RESULTS / f"closure_anatomy_g4_hybrid_seed{seed}.json"
                if cell == 0
                else records / "closure" / f"cell-{cell:03d}_seed-{seed}.json"
            )
            if closure.is_file():
                row["closure"] = _closure(closure)
            if f"cell-{cell:03d}_seed-{seed}" in angles:
                row["mixer_angles"] = angles[f"cell-{cell:03d}_seed-{seed}"]
            runs[f"cell-{cell:03d}_seed-{seed}"] = row
    out = {
        "what": "stage-2 quantum mixers against the hybrid twin's permutations, per run",
        "study": "configs/studies/mixers_g4.yaml",
        "commit": git_commit(),
        "profiles": {
            "auc.*.calochallenge": "calochallenge, classifier seed 0",
            "auc.high / auc.low": "fast, the study's seed",
        },
        "n_reference": 8100,
        "runs": runs,
    }
    print(
        "| run | val NLL | AUC high cc | AUC low cc | AUC high fast | FPDx1e3 | worst KS | |z|^2/d |"
    )
    for name, row in runs.items():
        closure = row.get("closure", {})
        cells = [
            f"{row.get(m, float('nan')):.3f}"
            for m in ("auc.high.calochallenge", "auc.low.calochallenge", "auc.high")
        ]
        print(
            f"| {name} | {row['training.val_nll']:.2f} | {' | '.join(cells)} | {row['fpd']:.1f} | "
            f"{closure.get('worst_ks', float('nan')):.3f} | "
            f"{closure.get('norm2_mean_over_dim', float('nan')):.3f} |"
        )
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
