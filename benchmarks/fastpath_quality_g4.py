"""Fast-path quality: twins retrained on the fused spline kernel against study 2's five seeds.

Issue 29 asks for no loss of quality: two seeds of each twin, retrained on the fast path, within
one standard deviation of study 2's five-seed means in AUC high (``calochallenge`` profile,
N = 8,100) and FPD. This script assembles that comparison from committed records only:

* the fast-path runs: ``cell-CCC_seed-S_record.json`` in ``--records`` (written by ``qcalo study
  compare configs/studies/whole_g4.yaml 0 4 --study-dir DIR --export-records RECORDS``), each
  with its ``calochallenge`` evaluation beside it as ``cell-CCC_seed-S_calochallenge.json`` (the
  ``eval_calochallenge/metrics.json`` of ``qcalo evaluate --generated SEED/generated.h5
  --reference DIR/data/reference-*.h5 --geometry photons --metrics cls-high,cls-low --profile
  calochallenge --seed 0 --out SEED/eval_calochallenge``), whose AUCs are merged into the record
  as ``auc.high.calochallenge`` / ``auc.low.calochallenge``;
* study 2's five seeds per twin (zuko path): ``benchmarks/results/twins_seeds_g4.json``.

Usage::

    python benchmarks/fastpath_quality_g4.py            # writes fastpath_quality_g4.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from qcalo.utils.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"
TWINS = {"classical_photons": 0, "hybrid_photons": 4}
METRICS = (
    "auc.high.calochallenge",
    "auc.low.calochallenge",
    "auc.high",
    "auc.low",
    "fpd",
    "kpd",
    "separation_power.etot_einc",
    "training.val_nll",
    "training_time_s",
)


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, cwd=RESULTS
    )
    return out.stdout.strip() or "unknown"


def merge_calochallenge(records: Path) -> None:
    """Write each ``*_calochallenge.json``'s AUCs into its record (idempotent)."""
    for evaluation in sorted(records.glob("cell-*_seed-*_calochallenge.json")):
        record_path = evaluation.with_name(
            evaluation.name.replace("_calochallenge.json", "_record.json")
        )
        if not record_path.exists():
            raise SystemExit(f"{evaluation} has no record {record_path.name} beside it")
        result = json.loads(evaluation.read_text())
        if result.get("profile") != "calochallenge" or result.get("seed") != 0:
            raise SystemExit(f"{evaluation}: not a calochallenge-profile evaluation, seed 0")
        record = json.loads(record_path.read_text())
        for which in ("high", "low"):
            if which in result["auc"]:
                record[f"auc.{which}.calochallenge"] = float(result["auc"][which])
        record["n_reference"] = int(result["n_reference"])
        write_json(record_path, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=str(RESULTS / "study_whole_g4_fastpath"))
    parser.add_argument("--five-seeds", default=str(RESULTS / "twins_seeds_g4.json"))
    parser.add_argument("--out", default=str(RESULTS / "fastpath_quality_g4.json"))
    args = parser.parse_args(argv)
    records = Path(args.records)
    merge_calochallenge(records)
    five = json.loads(Path(args.five_seeds).read_text())
    out: dict[str, Any] = {
        "what": "twins retrained on the fused spline kernel (fast path) against study 2's five "
        "seeds (zuko path), within one standard deviation of the five-seed mean?",
        "command": "qcalo study configs/studies/whole_g4.yaml --out DIR --cells 0,4 --seeds 1,2; "
        "qcalo evaluate --generated SEED/generated.h5 --reference DIR/data/reference-*.h5 "
        "--geometry photons --metrics cls-high,cls-low --profile calochallenge --seed 0 --out "
        "SEED/eval_calochallenge; python benchmarks/fastpath_quality_g4.py",
        "commit": _commit(),
        "profiles": {
            "auc.*.calochallenge": "calochallenge, classifier seed 0",
            "auc.high / auc.low": "fast, the study's seed",
        },
        "n_reference": 8100,
        "twins": {},
    }
    for twin, cell in TWINS.items():
        runs = {
            int(p.name.split("_seed-")[1].split("_")[0]): json.loads(p.read_text())
            for p in sorted(records.glob(f"cell-{cell:03d}_seed-*_record.json"))
        }
        if not runs:
            continue
        old = five["runs"][twin]
        rows: dict[str, Any] = {}
        for metric in METRICS:
            new = {seed: run[metric] for seed, run in runs.items() if metric in run}
            before = [old[s][metric] for s in sorted(old) if metric in old[s]]
            row: dict[str, Any] = {"new": {str(s): v for s, v in sorted(new.items())}}
            if len(before) >= 2:
                mean, std = statistics.mean(before), statistics.stdev(before)
                row |= {"old_mean": mean, "old_std": std, "old_n": len(before)}
                row["within_one_std"] = {str(s): abs(v - mean) <= std for s, v in new.items()}
                # every metric here is lower-is-better: "no loss" is at most one std above
                row["at_most_one_std_worse"] = {str(s): v <= mean + std for s, v in new.items()}
                row["old_same_seeds"] = {
                    str(s): old[str(s)][metric] for s in new if metric in old.get(str(s), {})
                }
            rows[metric] = row
        out["twins"][twin] = {"cell": cell, "seeds": sorted(runs), "metrics": rows}
        hi = rows["auc.high.calochallenge"]
        print(
            f"{twin}: AUC high calochallenge (N = 8,100) {hi['new']} vs "
            f"{hi.get('old_mean', float('nan')):.3f} ± {hi.get('old_std', float('nan')):.3f}; "
            f"FPD {rows['fpd']['new']} vs {rows['fpd'].get('old_mean', float('nan')):.2f} ± "
            f"{rows['fpd'].get('old_std', float('nan')):.2f}"
        )
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
