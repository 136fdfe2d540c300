"""Issue 9: the shipped twins over seeds: mean ± std per twin and the hybrid − classical difference.

Reads the finished runs of two cells of study 2 (``qcalo study configs/studies/whole_g4.yaml``;
by default cell 0, the classical twin, and cell 4, the hybrid twin) and, per run, the study's
own fast-profile metrics (``DONE``), the training time of ``run/summary.json`` (the trainer's sum
of epoch times, so it survives a resume) and AUC high in the ``calochallenge`` profile, the one
that reproduces the CaloChallenge's evaluate.py. That evaluation is not part of the study (7
minutes per run on one thread), so it is run here once per run, exactly as

    qcalo evaluate --generated <seed>/generated.h5 --reference <study>/data/reference-*.h5 \\
        --geometry photons --metrics cls-high --profile calochallenge --seed 0 --out <seed>/eval_calochallenge

and reused on later calls. Each run's two metric files are copied to
``benchmarks/results/study_whole_g4/runs/`` (``cell-00C_seed-S.json``, ``..._calochallenge.json``),
with the record this script reads from them (``..._record.json``: the metrics above, training
seconds, torch threads, OpenMP wait policy and CPU). A study folder lives on one machine; the
records are committed, so runs finished in earlier sessions (on other machines) still count: a
seed found in neither the study folder nor the records is simply absent.

By default it compares the classical twin (cell 0) with the hybrid twin (cell 4); ``--cells``
names any two cells, e.g. the hybrid twin against its product-circuit control (cell 5):

    .venv/bin/python benchmarks/twins_seeds_g4.py --study DIR \\
        --cells hybrid_photons=4 product_control=5 --out benchmarks/results/control_seeds_g4.json

Per twin: mean ± sample std (ddof 1) over its seeds. The difference hybrid − classical is taken
over the seeds both twins have, with the standard error of the mean paired difference (std/√n);
seeds pair the two runs' data split, held-out set and classifier seed, not their training
noise, so pairing can only narrow the error where the split matters. A difference is called one
only beyond the two-sided 95 % Student-t bound, t(0.975, n − 1) standard errors (12.7 for two
seeds, 4.3 for three), not 2: with so few seeds the standard error is itself a rough estimate.

The statistics are ``qcalo study compare``'s (:mod:`qcalo.studies.compare`), which reproduces
this script's figures from the committed records:

    qcalo study compare configs/studies/whole_g4.yaml 0 4 \
        --records benchmarks/results/study_whole_g4/runs --out compare/twins

Usage::

    .venv/bin/python benchmarks/twins_seeds_g4.py --study /work/studies/whole_g4

Results: benchmarks/results/twins_seeds_g4.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402
from scipy.stats import t as student_t  # noqa: E402

from qcalo.studies.compare import holm as holm_adjusted  # noqa: E402
from qcalo.studies.compare import paired_difference  # noqa: E402
from qcalo.utils.atomic import write_json  # noqa: E402

# Not a quality metric: left out of the Holm family.
NOT_QUALITY = frozenset({"training_time_s"})

# (key in the per-run record, label, digits in the table)
COLUMNS = (
    ("auc.high.calochallenge", "AUC high, calochallenge", 3),
    ("auc.high", "AUC high, fast", 3),
    ("auc.low", "AUC low, fast", 3),
    ("fpd", "FPD×10³", 1),
    ("kpd", "KPD×10³", 2),
    ("separation_power.etot_einc", "SP E_tot/E_inc", 4),
    ("separation_power_summary.mean", "SP mean of histograms", 4),
    ("training.val_nll", "best val NLL", 2),
    ("training_time_s", "training s", 0),
)


def _cell_folder(study: Path, index: int) -> Path:
    matches = sorted(study.glob(f"cells/cell-{index:03d}*"))
    if len(matches) != 1:
        raise SystemExit(f"error: {study}/cells has {len(matches)} folders for cell {index}")
    return matches[0]


def _calochallenge_auc(seed_dir: Path, reference: Path) -> dict:
    """metrics.json of the calochallenge-profile cls-high evaluation, run if missing."""
    out = seed_dir / "eval_calochallenge"
    metrics = out / "metrics.json"
    if not metrics.is_file():
        import torch
        from threadpoolctl import threadpool_limits

        from qcalo.pipeline.evaluate import evaluate

        torch.set_num_threads(1)
        with threadpool_limits(limits=1):
            evaluate(
                seed_dir / "generated.h5",
                reference,
                "photons",
                out,
                metrics="cls-high",
                profile="calochallenge",
                seed=0,
            )
    return json.loads(metrics.read_text(encoding="utf-8"))


def _archived_records(archive: Path | None, index: int) -> dict[int, dict]:
    """{seed: record} of the committed ``cell-00C_seed-S_record.json`` files of one cell."""
    if archive is None:
        return {}
    records = {}
    for path in sorted(archive.glob(f"cell-{index:03d}_seed-*_record.json")):
        seed = int(path.name.split("_seed-")[1].split("_")[0])
        records[seed] = json.loads(path.read_text(encoding="utf-8"))
    return records


def collect(study: Path | None, cells: dict[str, int], copy_to: Path | None) -> dict[str, dict]:
    """{label: {seed: {metric: value}}} for every finished run of the given cells: the archived
    records in ``copy_to`` first, then the study folder's runs (which replace a record of the
    same seed and are archived in turn)."""
    runs: dict[str, dict] = {label: _archived_records(copy_to, i) for label, i in cells.items()}
    if study is None:
        return runs
    references = sorted(study.glob("data/reference-*.h5"))
    if len(references) != 1:
        raise SystemExit(f"error: {study}/data has {len(references)} reference files, expected 1")
    for label, index in cells.items():
        for seed_dir in sorted(_cell_folder(study, index).glob("seed-*")):
            done = seed_dir / "DONE"
            if not done.is_file():
                continue
            seed = int(seed_dir.name.split("-")[1])
            record = dict(json.loads(done.read_text(encoding="utf-8"))["metrics"])
            summary = json.loads((seed_dir / "run" / "summary.json").read_text(encoding="utf-8"))
            record["training_time_s"] = summary["training_time_s"]
            record["torch_threads"] = summary.get("torch_threads")
            record["omp_wait_policy"] = summary.get("omp_wait_policy")
            record["cpu_model"] = summary.get("cpu_model")
            calo = _calochallenge_auc(seed_dir, references[0])
            record["auc.high.calochallenge"] = calo["auc"]["high"]
            record["n_reference"] = calo["n_reference"]
            runs[label][seed] = record
            if copy_to is not None:
                copy_to.mkdir(parents=True, exist_ok=True)
                stem = f"cell-{index:03d}_seed-{seed}"
                shutil.copyfile(done, copy_to / f"{stem}.json")
                shutil.copyfile(
                    seed_dir / "eval_calochallenge" / "metrics.json",
                    copy_to / f"{stem}_calochallenge.json",
                )
                write_json(copy_to / f"{stem}_record.json", record)
    return runs


def summarise(runs: dict[str, dict], first: str, second: str) -> dict:
    """Per-label mean/std/n per metric, and the paired difference second − first."""
    out: dict = {"per_model": {}, "difference": {"of": f"{second} - {first}"}}
    for label, by_seed in runs.items():
        out["per_model"][label] = {"seeds": sorted(by_seed)}
        for key, *_ in COLUMNS:
            values = [by_seed[s][key] for s in sorted(by_seed)]
            out["per_model"][label][key] = {
                "mean": statistics.fmean(values) if values else math.nan,
                "std": statistics.stdev(values) if len(values) > 1 else math.nan,
                "n": len(values),
                "values": values,
            }
    common = sorted(set(runs[first]) & set(runs[second]))
    out["difference"]["seeds"] = common
    for key, *_ in COLUMNS:
        d = paired_difference(
            {s: runs[first][s][key] for s in common}, {s: runs[second][s][key] for s in common}
        )
        n, mean, sem, p = d.n, d.mean, d.sem, d.p_value
        t95 = float(student_t.ppf(0.975, n - 1)) if n > 1 else math.nan
        out["difference"][key] = {
            "mean": mean,
            "sem": sem,
            "n": n,
            "t95": t95,
            "p_value": p,
            "significant_95": bool(n > 1 and abs(mean) > t95 * sem),
        }
    family = [key for key, *_ in COLUMNS if key not in NOT_QUALITY]
    for position, adjusted in holm([out["difference"][k]["p_value"] for k in family]).items():
        out["difference"][family[position]]["p_holm"] = adjusted
        out["difference"][family[position]]["significant_95_holm"] = bool(adjusted < 0.05)
    out["difference"]["holm_family"] = family
    return out


def holm(p_values: list[float]) -> dict[int, float]:
    """Holm's adjusted p-values by index (qcalo.studies.compare's, which `qcalo study compare` uses)."""
    return dict(enumerate(holm_adjusted(p_values)))


def markdown(summary: dict) -> str:
    labels = list(summary["per_model"])
    diff = summary["difference"]
    lines = [
        "| metric | "
        + " | ".join(labels)
        + f" | {diff['of']} (± s.e., n = {len(diff['seeds'])}; * beyond the 95 % t bound,"
        + " ** also after Holm over the quality metrics) | p (Holm) |",
        "|---" * (len(labels) + 3) + "|",
    ]
    for key, name, digits in COLUMNS:
        cells = []
        for label in labels:
            m = summary["per_model"][label][key]
            cells.append(f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f} (n={m['n']})")
        d = diff[key]
        mark = " *" if d["significant_95"] else ""
        mark += "*" if d.get("significant_95_holm") else ""
        cells.append(f"{d['mean']:+.{digits}f} ± {d['sem']:.{digits}f}{mark}")
        holm_p = f" ({d['p_holm']:.3f})" if "p_holm" in d else ""
        cells.append(f"{d['p_value']:.3f}{holm_p}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--study", help="study 2's output folder; without it, only the archived records are read"
    )
    parser.add_argument(
        "--cells",
        nargs=2,
        default=["classical_photons=0", "hybrid_photons=4"],
        metavar="LABEL=CELL",
        help="the two cells to compare; the difference is the second minus the first",
    )
    parser.add_argument(
        "--copy-to", default=str(REPO / "benchmarks" / "results" / "study_whole_g4" / "runs")
    )
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "twins_seeds_g4.json")
    )
    args = parser.parse_args(argv)

    study = Path(args.study) if args.study else None
    cells = {}
    for entry in args.cells:
        label, sep, index = entry.partition("=")
        if not sep or not index.isdigit():
            parser.error(f"--cells takes LABEL=CELL (e.g. hybrid_photons=4), got {entry!r}")
        cells[label] = int(index)
    if len(cells) != 2:
        parser.error("--cells needs two different labels")
    first, second = cells
    runs = collect(study, cells, Path(args.copy_to) if args.copy_to else None)
    if not all(runs.values()):
        empty = [label for label, by in runs.items() if not by]
        raise SystemExit(f"error: no finished runs for {empty}; pass --study with their folder")
    summary = summarise(runs, first, second)
    result = {
        "commit": git_commit(),
        "study": str(study) if study else None,
        "cells": cells,
        "classifier_profiles": {
            "auc.high.calochallenge": "calochallenge, seed 0",
            "auc.high / auc.low": "fast, the study's seed",
        },
        "n_reference": sorted({r["n_reference"] for by in runs.values() for r in by.values()}),
        "runs": {label: {str(s): r for s, r in by.items()} for label, by in runs.items()},
        "summary": summary,
    }
    out = write_json(args.out, result)
    print(markdown(summary))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
