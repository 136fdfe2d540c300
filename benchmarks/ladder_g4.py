"""Issue 13, study 2: the quantum-creep ladder as one figure (reads the committed run records).

Study 2 (``configs/studies/whole_g4.yaml``) swaps the classical twin's conditioners for hybrid
ones step by step at matched size (cell 0: none, 1: stage 1, 2: + stage-2 blocks 1-4, 3: + blocks
1-8, 4: all, the hybrid twin; cell 5: the hybrid twin with product circuits, the control). This
script reads every finished run of those cells from the records that
``benchmarks/twins_seeds_g4.py`` commits to ``benchmarks/results/study_whole_g4/runs/`` (and,
with ``--study DIR``, the study folder's finished runs too, archived in turn) and writes, per
cell and metric, mean ± sample std over seeds and the difference to the classical twin paired by
seed (mean ± standard error, two-sided paired-t p), and a figure: the top row each run's value
and the cell's mean ± std, the bottom row the paired difference to cell 0 with its 95 % Student-t
interval (t(0.975, n − 1) standard errors; none is drawn for one common seed).

Metrics: AUC high in the ``calochallenge`` profile (the one that reproduces the CaloChallenge's
evaluate.py, 8,100 generated vs 8,100 held-out Geant4 showers), FPD×10³ and the best validation
NLL (nats per shower). Lower is better for all three.

Usage::

    .venv/bin/python benchmarks/ladder_g4.py                    # committed records only
    .venv/bin/python benchmarks/ladder_g4.py --study /work/studies/whole_g4

Results: benchmarks/results/ladder_g4.json, benchmarks/results/ladder_g4.png, a table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402
from twins_seeds_g4 import collect, summarise  # noqa: E402

from qcalo.utils.atomic import write_json  # noqa: E402

# (cell index, label, circuit angles, x position on the figure)
CELLS = (
    (0, "classical twin", 0, 0.0),
    (1, "stage 1 hybrid", 144, 1.0),
    (2, "+ stage-2 blocks 1-4", 272, 2.0),
    (3, "+ stage-2 blocks 1-8", 400, 3.0),
    (4, "hybrid twin", 528, 4.0),
    (5, "control: no entanglers", 528, 4.35),
)
# (record key, axis label, digits); evaluate writes FPD and KPD already ×10³.
METRICS = (
    ("auc.high.calochallenge", "AUC high (calochallenge)", 3),
    ("fpd", "FPD × 10³", 1),
    ("training.val_nll", "best val NLL [nats]", 2),
)
ARCHIVE = REPO / "benchmarks" / "results" / "study_whole_g4" / "runs"


def ladder(runs: dict[int, dict[int, dict]]) -> dict:
    """{cell: {label, circuit_angles, seeds, metric: {values, mean, std, n, minus_classical}}}:
    ``minus_classical`` is ``twins_seeds_g4.summarise``'s paired difference to cell 0 (its p
    Holm-adjusted over that pair's eight quality metrics)."""
    out: dict = {}
    for index, label, angles, _ in CELLS:
        by_seed = runs.get(index, {})
        pair = summarise({"classical": runs.get(0, {}), "cell": by_seed}, "classical", "cell")
        cell: dict = {"label": label, "circuit_angles": angles, "seeds": sorted(by_seed)}
        for key, *_ in METRICS:
            diff = pair["difference"][key]
            cell[key] = {
                **{k: pair["per_model"]["cell"][key][k] for k in ("values", "mean", "std", "n")},
                "minus_classical": {
                    "seeds": pair["difference"]["seeds"],
                    **{k: diff[k] for k in ("mean", "sem", "t95", "p_value", "p_holm")},
                    "beyond_95": diff["significant_95"],
                },
            }
        out[str(index)] = cell
    return out


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context(mplhep.style.ROOT), plt.rc_context({"font.size": 11}):
        fig, axes = plt.subplots(2, len(METRICS), figsize=(5 * len(METRICS), 7.5), sharex=True)
        for column, (key, name, _) in enumerate(METRICS):
            top, bottom = axes[0, column], axes[1, column]
            for index, _label, _, x in CELLS:
                m = summary[str(index)][key]
                if not m["n"]:
                    continue
                colour = "tab:gray" if index == 5 else ("tab:blue" if index == 0 else "tab:red")
                marker = "s" if index == 5 else "o"
                top.plot([x] * m["n"], m["values"], marker, color=colour, alpha=0.35, ms=4)
                std = m["std"] if m["n"] > 1 else 0.0
                top.errorbar(x, m["mean"], yerr=std, fmt=marker, color=colour, capsize=4, ms=7)
                d = m["minus_classical"]
                if index == 0 or not d["seeds"]:
                    continue
                half = d["t95"] * d["sem"] if len(d["seeds"]) > 1 else 0.0
                bottom.errorbar(x, d["mean"], yerr=half, fmt=marker, color=colour, capsize=4)
            bottom.axhline(0.0, color="tab:blue", lw=1, ls="--")
            top.set_ylabel(name, fontsize=11)
            bottom.set_ylabel(f"Δ {name.split(' [')[0]} vs classical", fontsize=11)
            bottom.set_xticks([x for *_, x in CELLS])
            bottom.set_xticklabels(
                [f"{i}\n{a}" if i < 5 else "ctl\n528" for i, _, a, _ in CELLS], fontsize=9
            )
            bottom.set_xlabel("ladder step / circuit angles", fontsize=11)
        fig.suptitle(
            "Study 2: quantum creep, seeds as dots, mean ± std (top), "
            "paired Δ ± 95 % t interval (bottom)",
            fontsize=11,
        )
        fig.tight_layout()
        partial = path.with_name(path.stem + ".partial.png")
        fig.savefig(partial, dpi=110)
        plt.close(fig)
        partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, help="also read (and archive) this study folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ladder_g4")
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="the committed run records")
    args = parser.parse_args(argv)

    labels = {f"cell {i}": i for i, *_ in CELLS}
    collected = collect(args.study, labels, args.archive)
    runs = {labels[label]: by_seed for label, by_seed in collected.items()}
    summary = ladder(runs)

    header = " | ".join(f"{n} | Δ vs classical" for _, n, _ in METRICS)
    print(f"| cell | step | seeds | {header} |")
    print("|---" * (3 + 2 * len(METRICS)) + "|")
    for index, label, _, _ in CELLS:
        cell = summary[str(index)]
        row = [str(index), label, ",".join(map(str, cell["seeds"])) or "-"]
        for key, _, digits in METRICS:
            m, d = cell[key], cell[key]["minus_classical"]
            row.append(f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}" if m["n"] else "-")
            mark = " *" if d["beyond_95"] else ""
            row.append(
                f"{d['mean']:+.{digits}f} ± {d['sem']:.{digits}f}{mark} (n={len(d['seeds'])})"
                if index and d["seeds"]
                else "-"
            )
        print("| " + " | ".join(row) + " |")

    out_json, out_png = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    figure(summary, out_png)
    write_json(
        out_json, {"commit": git_commit(), "metrics": [k for k, *_ in METRICS], "cells": summary}
    )
    print(f"written {out_json} and {out_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
